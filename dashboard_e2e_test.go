//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// dashboardHidden is in the name of every session the restricted viewer
// may not read; the browser test searches every page and answer for it.
const dashboardHidden = "ledgerbot"

const chromiumHelp = `the dashboard browser test needs Debian's chromium at /usr/bin/chromium
(or another Chromium named by $SESSIONPLANE_CHROMIUM). Install it with:
  apt-get update && apt-get install -y chromium
(.ci/run does this when /usr/bin/chromium is absent).`

// TestDashboardInBrowser loads the dashboard in a real Chromium (driven by
// playwright-core, e2e/dashboard.mjs) against a seeded database: the pages,
// a spawn made by a real MCP client in another process unfolding live in
// the run tree, transcripts, search, the phone layout, and a restricted
// principal that must not see a hidden session in any page, API answer or
// event. It fails (never skips) without chromium, node or npm.
//
// Screenshots go to a temporary directory, or to $SESSIONPLANE_SCREENSHOTS
// (e.g. docs/screenshots, to refresh the README's).
func TestDashboardInBrowser(t *testing.T) {
	chromium := os.Getenv("SESSIONPLANE_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium not found: %v\n%s", err, chromiumHelp)
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	e2eRequireNode(t)
	e2eEnsureNodeModules(t, filepath.Join(root, "e2e"))
	bin := buildBinary(t) // built once per test run, shared with the other process tests
	env := e2eHermeticEnv(t)

	dir := t.TempDir()
	cfg := scriptedConfig(t, dir, `{"conversations": [
		{"match": "slow:", "turns": [{"delay_ms": 600000, "text": "never"}]},
		{"match": "quick:", "turns": [{"text": "The sum is 42.", "usage": {"input_tokens": 900, "output_tokens": 120}}]},
		{"turns": [{"text": "done"}]}]}`, `
[agents.presets.observer]
tools.allow = ["sessions_list", "sessions_history", "sessions_search", "session_status"]
sessions.key_prefix = "agent:main:"
`)
	db := testdb.DSN(t, "dashboard.db")
	seedDashboard(t, db)

	full := startUI(t, bin, env, "--db", db, "--config", cfg)
	restricted := startUI(t, bin, env, "--db", db, "--config", cfg, "--preset", "observer")

	shots := os.Getenv("SESSIONPLANE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if !filepath.IsAbs(shots) {
		shots = filepath.Join(root, shots)
	}
	params, _ := json.Marshal(map[string]string{"full": full, "restricted": restricted, "bin": bin, "db": db, "config": cfg,
		"shots": shots, "hidden": dashboardHidden, "chromium": chromium})
	pf := filepath.Join(dir, "params.json")
	if err := os.WriteFile(pf, params, 0o600); err != nil {
		t.Fatal(err)
	}
	out := e2eRun(t, root, env, 5*time.Minute, "node", filepath.Join("e2e", "dashboard.mjs"), pf)
	e2eRequireSummary(t, out, "dashboard browser")
	for _, name := range []string{"desktop-sessions", "desktop-tree", "desktop-transcript", "desktop-stats", "phone-sessions", "phone-tree", "phone-transcript", "phone-stats"} {
		if st, err := os.Stat(filepath.Join(shots, name+".png")); err != nil || st.Size() < 1000 {
			t.Errorf("screenshot %s.png: %v", name, err)
		}
	}
}

var uiURL = regexp.MustCompile(`open (http://\S+\?token=[0-9a-f]+)`)

// startUI starts `sessionplane ui` on a free loopback port and returns the
// address it printed (with its token). It is stopped with SIGTERM at the
// end of the test; its stderr goes to the test log.
func startUI(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"ui", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("sessionplane ui did not stop within 15s of SIGTERM")
		}
	})
	found := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			t.Log("ui: " + line)
			if m := uiURL.FindStringSubmatch(line); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		cmd.Wait()
	}()
	select {
	case u := <-found:
		return u
	case <-done:
		t.Fatal("sessionplane ui exited before printing its address")
	case <-time.After(60 * time.Second):
		t.Fatal("sessionplane ui printed no address within 60s")
	}
	return ""
}

// seedDashboard writes a small history: agent:main:main spawned a research
// child (a tool call, an untrusted tool result, an answer) that spawned a
// summariser; runs spread over four days; and agent ledgerbot's own tree,
// which the observer preset may not read.
func seedDashboard(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	day := int64(24 * 60 * 60 * 1000)
	now := time.Now().UnixMilli()
	n := 0
	spawn := func(requester, child, label, task string, daysAgo int64) string {
		t.Helper()
		n++
		id := fmt.Sprintf("seed-run-%d", n)
		err := st.CreateRun(ctx, &store.Session{Key: child, ParentKey: requester, Label: label, SpawnedBy: requester,
			Depth: strings.Count(child, ":subagent:"), Model: "demo/scripted"},
			[]store.Message{{SessionKey: child, Role: store.RoleUser, Trust: store.TrustInterSession, Content: store.Content{Text: task}}},
			&store.Run{ID: id, Kind: "spawn", ChildKey: child, RequesterKey: requester, AgentID: store.AgentOf(child), Label: label,
				Task: task, Model: "demo/scripted", CreatedAt: now - daysAgo*day})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := st.ClaimRun(ctx, id, "seed", 1); err != nil || !ok {
			t.Fatalf("claim %s: %v %v", id, ok, err)
		}
		return id
	}
	finish := func(id, child, label, state, answer string, in, out int64, cost float64, announceTo string, runtimeMS int64) {
		t.Helper()
		o := store.Outcome{State: state, ResultText: answer, TokensIn: in, TokensOut: out, CostUSD: cost, SessionStatus: map[string]string{"ok": "done"}[state]}
		if o.SessionStatus == "" {
			o.SessionStatus = state
		}
		if answer != "" {
			o.Messages = []store.Message{{SessionKey: child, Role: store.RoleAssistant, Trust: store.TrustModel, TokensIn: in, TokensOut: out, CostUSD: cost,
				Content: store.Content{Text: answer}}}
		}
		var a *store.Announce
		if announceTo != "" {
			a = &store.Announce{RequesterKey: announceTo, Status: state, Body: fmt.Sprintf("[announce] sub-agent %q (run %s) finished: %s\n\n%s\n\nStats: runtime %ds • tokens %d • sessionKey %s • transcript session://%s",
				label, id, state, answer, runtimeMS/1000, in+out, child, child)}
		}
		if ok, err := st.FinishRun(ctx, id, o, a); err != nil || !ok {
			t.Fatalf("finish %s: %v %v", id, ok, err)
		}
		// A seeded run took a while (the store stamps start and end "now").
		if _, err := st.DB().ExecContext(ctx, "UPDATE runs SET created_at = created_at - ?1, started_at = created_at - ?1, ended_at = created_at WHERE id = ?2", runtimeMS, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"agent:main:main", "agent:" + dashboardHidden + ":main"} {
		if _, err := st.EnsureSession(ctx, store.Session{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	st.AppendMessage(ctx, store.Message{SessionKey: "agent:main:main", Role: store.RoleUser, Trust: store.TrustUser,
		Content: store.Content{Text: "Find recent papers on zebra stripe thermoregulation and summarise them."}})

	research := "agent:main:subagent:research1"
	rid := spawn("agent:main:main", research, "research", "Find recent papers on zebra stripe thermoregulation.", 0)
	st.AppendMessages(ctx, []store.Message{
		{SessionKey: research, Role: store.RoleAssistant, Trust: store.TrustModel, TokensIn: 1200, TokensOut: 80,
			Content: store.Content{Text: "Searching the literature.", ToolCalls: []store.ToolCall{{ID: "call_1", Name: "fs__search_files", Args: json.RawMessage(`{"path":"papers","pattern":"zebra"}`)}}}},
		{SessionKey: research, Role: store.RoleTool, Trust: store.TrustExternal,
			Content: store.Content{ToolResults: []store.ToolResult{{CallID: "call_1", Name: "fs__search_files",
				Content: "papers/zebra-2024.pdf\npapers/stripes-heat.pdf\n<img src=x onerror=\"window.__xss=true\"><script>window.__xss=true</script>"}}}},
	})
	sum := research + ":subagent:sum1"
	sid := spawn(research, sum, "summarise", "Summarise papers/zebra-2024.pdf in three bullets.", 0)
	finish(sid, sum, "summarise", "ok", "• Stripes create convective eddies\n• Surface temperature differs by up to 12 °C\n• Effect is small in still air", 2400, 310, 0.0119, research, 41_000)
	finish(rid, research, "research", "ok", "Two papers found; the zebra-2024 study suggests stripes aid cooling.", 3100, 420, 0.0156, "agent:main:main", 151_000)

	for d := int64(1); d <= 3; d++ {
		k := fmt.Sprintf("agent:main:subagent:daily%d", d)
		id := spawn("agent:main:main", k, fmt.Sprintf("digest day -%d", d), "Write the daily digest.", d)
		state := "ok"
		if d == 2 {
			state = "error"
		}
		finish(id, k, "digest", state, "Digest written.", 1500*d, 200*d, 0.01*float64(d), "", 20_000*d)
		st.Archive(ctx, k)
	}

	hidden := "agent:" + dashboardHidden + ":subagent:plan1"
	hid := spawn("agent:"+dashboardHidden+":main", hidden, dashboardHidden+"-plans", "Draft the "+dashboardHidden+" zebra acquisition plan.", 1)
	finish(hid, hidden, dashboardHidden+"-plans", "ok", "The "+dashboardHidden+" zebra plan is ready.", 9000, 9000, 7.5, "agent:"+dashboardHidden+":main", 95_000)
}
