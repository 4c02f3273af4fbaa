package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// migrateScript: children answer in French with diacritics; "park me"
// parks on an approval when [approval] asks for one.
const migrateScript = `{"conversations": [
	{"match": "park me", "turns": [
		{"tool_calls": [{"name": "task_list", "args": {"action": "create", "list": "parked", "title": "after approval"}}]},
		{"text": "parked call done"}]},
	{"turns": [{"text": "Résumé prêt : le déploiement à Zürich a réussi, naïvement", "usage": {"input_tokens": 40, "output_tokens": 12}}]}]}`

// migrateTarget is where the plane moves: a fresh PostgreSQL schema when
// the suite has a server, else a new SQLite file.
func migrateTarget(t *testing.T) string {
	t.Helper()
	if base := os.Getenv(testdb.Env); base != "" {
		return testdb.Schema(t, base)
	}
	return filepath.Join(t.TempDir(), "target.db")
}

// migrateCLI runs the real binary's `db migrate`.
func migrateCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(buildBinary(t), append([]string{"db", "migrate"}, args...)...)
	cmd.Env = append(os.Environ(), "SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME="+t.TempDir())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// structured is a tools/call response's structuredContent; the call must
// have succeeded.
func structured(t *testing.T, resp map[string]any) map[string]any {
	t.Helper()
	res, _ := resp["result"].(map[string]any)
	if res == nil || res["isError"] == true {
		t.Fatalf("tool call failed: %v", resp)
	}
	sc, _ := res["structuredContent"].(map[string]any)
	return sc
}

func jsonArgs(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// stop ends a server by closing its stdin and wants exit 0.
func (p *stdioProc) stop() {
	p.t.Helper()
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		p.t.Fatalf("server exit %d: %s", code, p.stderr)
	}
}

// hitKeys are a sessions_search result's hits as sorted "key#seq snippet".
func hitKeys(sc map[string]any) []string {
	var out []string
	hits, _ := sc["hits"].([]any)
	for _, h := range hits {
		m := h.(map[string]any)
		out = append(out, fmt.Sprintf("%v#%v %v", m["key"], m["seq"], m["snippet"]))
	}
	sort.Strings(out)
	return out
}

// A plane built by real server processes on SQLite (a spawned run with its
// announce and budget, a fork, tasks, a cron job, a run parked on an
// approval, French text) moves with `sessionplane db migrate` to
// PostgreSQL (or, on an SQLite-only run, to another SQLite file), refusing
// while a server runs on the source and into a database that is not
// empty; a server on the target then shows the same histories and search
// hits, the parked approval, and carries on: the next message gets the
// next seq, the next task an id past the old ones.
func TestDBMigrateMovesAPlane(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "source.db")
	for _, d := range []string{"plain", "approval"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	plain := scriptedConfig(t, filepath.Join(dir, "plain"), migrateScript, "")
	approval := scriptedConfig(t, filepath.Join(dir, "approval"), migrateScript, "[approval]\nmutate-session = \"elicit\"\n")

	// The plane, built through the tools.
	a := startServer(t, "--db", src, "--config", plain)
	a.send(initMsg)
	a.response(1)
	a.send(callMsg(2, "sessions_spawn", `{"task":"Résumé du déploiement à Zürich, s'il vous plaît","label":"zürich","budget":{"tokens":100000,"usd":5}}`))
	spawned := structured(t, a.response(2))
	runID, child := spawned["runId"].(string), spawned["childSessionKey"].(string)
	a.send(callMsg(3, "spawn_result", jsonArgs(map[string]any{"task_id": runID, "wait_seconds": 30})))
	if r := structured(t, a.response(3)); r["status"] != "ok" {
		t.Fatalf("the spawned run: %v", r)
	}
	a.send(callMsg(4, "sessions_fork", jsonArgs(map[string]any{"key": child, "label": "fourche"})))
	fork := structured(t, a.response(4))["key"].(string)
	var oldTask int64
	for i, title := range []string{"écrire la note", "relire", "publier"} {
		a.send(callMsg(5+i, "task_list", jsonArgs(map[string]any{"action": "create", "list": "migration", "title": title})))
		id := int64(structured(t, a.response(5+i))["task"].(map[string]any)["id"].(float64))
		oldTask = max(oldTask, id)
	}
	a.send(callMsg(8, "cron", jsonArgs(map[string]any{"action": "add", "job": map[string]any{"name": "nouvel an", "schedule": "0 3 1 1 *",
		"payload": map[string]any{"kind": "agentTurn", "message": "bilan de l'année"}}})))
	structured(t, a.response(8))
	a.stop()

	b := startServer(t, "--db", src, "--config", approval)
	b.send(initMsg)
	b.response(1)
	b.send(callMsg(2, "sessions_spawn", `{"task":"park me"}`))
	// The spawn's reply and the notice of its run parking may come in either
	// order: the run starts while the call returns.
	for replied, parked := false, false; !replied || !parked; {
		m := b.next()
		if params, _ := m["params"].(map[string]any); m["method"] == "notifications/message" && params["logger"] == "sessionplane.approval" {
			parked = true
		}
		if v, ok := m["id"].(float64); ok && int(v) == 2 {
			structured(t, m)
			replied = true
		}
	}
	queries := []string{"zurich", "RÉSUMÉ", "naivement deploiement"}
	before := map[string]any{}
	reads := func(p *stdioProc, out map[string]any) {
		p.send(callMsg(10, "sessions_history", jsonArgs(map[string]any{"key": child, "limit": 200, "includeTools": true})))
		out["child"] = structured(t, p.response(10))["messages"]
		p.send(callMsg(11, "sessions_history", jsonArgs(map[string]any{"key": fork, "limit": 200, "includeTools": true})))
		out["fork"] = structured(t, p.response(11))["messages"]
		for i, q := range queries {
			p.send(callMsg(12+i, "sessions_search", jsonArgs(map[string]any{"query": q, "limit": 20})))
			out["search "+q] = hitKeys(structured(t, p.response(12+i)))
		}
		p.send(callMsg(20, "approvals", `{"action":"list"}`))
		out["approvals"] = structured(t, p.response(20))["pending"]
	}
	reads(b, before)
	b.stop()
	if hits := before["search zurich"].([]string); len(hits) < 3 {
		t.Fatalf("the plane's search finds too little to compare: %v", hits)
	}
	if p, _ := before["approvals"].([]any); len(p) != 1 {
		t.Fatalf("pending approvals on the source: %v", before["approvals"])
	}
	st, err := store.Open(context.Background(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"sessions", "messages", "runs", "announces", "cron_jobs", "task_lists", "tasks", "task_events", "budget_usage", "approvals"} {
		var n int
		if err := st.DB().QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n == 0 {
			t.Errorf("the source plane has %d rows in %s (%v): the test must fill every table", n, table, err)
		}
	}
	st.Close()

	// Refused while a server runs on the source.
	target := migrateTarget(t)
	r := startServer(t, "--db", src, "--config", plain)
	r.send(initMsg)
	r.response(1)
	code, stdout, stderr := migrateCLI(t, "--from", "sqlite:"+src, "--to", target)
	if code != 1 || !strings.Contains(stderr, "a server is running on the source") || !strings.Contains(stderr, "--ignore-running") || stdout != "" {
		t.Fatalf("migrate while a server runs: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	r.stop()

	code, stdout, stderr = migrateCLI(t, "--from", "sqlite:"+src, "--to", target)
	if code != 0 || !strings.Contains(stdout, "ok: migrated") || !strings.Contains(stdout, "verified: row counts equal") ||
		!strings.Contains(stdout, "not copied: instances") || !strings.Contains(stderr, "messages") {
		t.Fatalf("migrate: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	t.Logf("db migrate:\n%s", stdout)

	// Refused into a database that already holds a plane.
	code, _, stderr = migrateCLI(t, "--from", src, "--to", target)
	if code != 1 || !strings.Contains(stderr, "not empty") || !strings.Contains(stderr, "table sessions") {
		t.Fatalf("migrate into a full target: exit %d: %s", code, stderr)
	}

	// A server on the target sees the same plane and carries on.
	q := startServer(t, "--db", target, "--config", plain)
	q.send(initMsg)
	q.response(1)
	after := map[string]any{}
	reads(q, after)
	for k, want := range before {
		if got := after[k]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s differs after the move:\n got %v\nwant %v", k, got, want)
		}
	}
	msgs := before["child"].([]any)
	last := int64(msgs[len(msgs)-1].(map[string]any)["seq"].(float64))
	q.send(callMsg(30, "sessions_send", jsonArgs(map[string]any{"key": child, "message": "encore une fois, après le déménagement", "timeoutSeconds": 30})))
	structured(t, q.response(30))
	q.send(callMsg(31, "sessions_history", jsonArgs(map[string]any{"key": child, "limit": 200, "includeTools": true})))
	now := structured(t, q.response(31))["messages"].([]any)
	if len(now) <= len(msgs) {
		t.Fatalf("sessions_send on the target added nothing: %d messages", len(now))
	}
	for i, m := range now {
		if seq := int64(m.(map[string]any)["seq"].(float64)); seq != int64(i+1) {
			t.Fatalf("message %d has seq %d after the move (last old seq %d): %v", i, seq, last, now)
		}
	}
	if m := now[len(msgs)].(map[string]any); int64(m["seq"].(float64)) != last+1 || !strings.Contains(m["content"].(string), "déménagement") {
		t.Fatalf("the first new message: %v, want seq %d with the sent text", m, last+1)
	}
	q.send(callMsg(32, "task_list", `{"action":"create","list":"migration","title":"après"}`))
	if id := int64(structured(t, q.response(32))["task"].(map[string]any)["id"].(float64)); id <= oldTask {
		t.Fatalf("a new task on the target got id %d, not past the old %d", id, oldTask)
	}
	q.stop()
}

// Usage errors exit 2 before anything is opened or created.
func TestDBMigrateUsage(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	to := filepath.Join(dir, "to.db")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"db", "migrate", "--from", "sqlite:" + missing}, "--to is required"},
		{[]string{"db", "migrate", "--from", "sqlite:" + missing, "--to", to}, "name the existing SQLite database"},
		{[]string{"db", "migrate", "--from", "sqlite:" + to, "--to", "sqlite://" + to}, "the same database"},
		{[]string{"db", "migrate", "--to", to, "extra"}, `unexpected argument "extra"`},
	} {
		code, _, stderr := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	for _, p := range []string{missing, to} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s was created (%v)", p, err)
		}
	}
}
