package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

var updatePinned = flag.Bool("update", false, "rewrite testdata/read_results.golden from the server's answers")

// uuidRE matches the random session ids, which the golden file does not pin.
var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// TestReadResultsPinned pins the bytes of session_status and sessions_list
// results as the stdio server writes them (text and structured content,
// the order of their keys, the children's order, the active run, the
// expiry and the budget line), so that a change to how they are read or
// encoded cannot change what a client receives. The store's clock is
// fixed and every call's record is committed before the next call, so the
// answers are the same on every run and on both backends; only the
// sessions' random ids are masked.
func TestReadResultsPinned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	at := time.UnixMilli(1_764_000_000_000)
	st, err := store.Open(ctx, testdb.DSN(t, "pin.db"), &store.Options{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, err := config.Parse([]byte(`
[agents.defaults.subagents]
max_spawn_depth = 2
archive_after_minutes = 60
`), "pin.toml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Build(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// The state: the client's session with two children (created in the
	// reverse order of their keys) and a running run; the first child with
	// a finished run (an expiry and a budget) and a child of its own.
	const main = "agent:main:main"
	for _, s := range []store.Session{
		{Key: main},
		{Key: "agent:main:subagent:b", Label: "second", ParentKey: main, Depth: 1, Model: "m-1", Thinking: "low"},
		{Key: "agent:main:subagent:a", Label: "first", ParentKey: main, Depth: 1, Model: "m-1", Preset: ""},
		{Key: "agent:main:subagent:b:subagent:c", Label: "grandchild", ParentKey: "agent:main:subagent:b", Depth: 2},
	} {
		if _, err := st.EnsureSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []store.Run{
		{ID: "run-main-1", Kind: "send", ChildKey: main, RequesterKey: main, AgentID: "main", State: store.RunRunning,
			CreatedAt: at.UnixMilli() - 5000, StartedAt: at.UnixMilli() - 4000, HeartbeatAt: at.UnixMilli(), OwnerPID: os.Getpid()},
		{ID: "run-b-1", Kind: "spawn", ChildKey: "agent:main:subagent:b", RequesterKey: main, AgentID: "main", Task: "t1",
			State: "ok", Cleanup: "keep", Depth: 1, Role: "orchestrator", Options: json.RawMessage(`{"budget":{"run_tokens":5000,"run_usd":0.5}}`),
			TokensIn: 1200, TokensOut: 300, CostUSD: 0.0123, CreatedAt: at.UnixMilli() - 9000, StartedAt: at.UnixMilli() - 8000, EndedAt: at.UnixMilli() - 7000},
		{ID: "run-b-2", Kind: "send", ChildKey: "agent:main:subagent:b", RequesterKey: main, AgentID: "main", Task: "t2",
			State: "ok", Cleanup: "keep", Depth: 1, Role: "orchestrator", Options: json.RawMessage(`{"budget":{"run_tokens":2000}}`),
			TokensIn: 10, TokensOut: 5, CreatedAt: at.UnixMilli() - 3000, StartedAt: at.UnixMilli() - 2500, EndedAt: at.UnixMilli() - 2000},
	} {
		r := r
		if err := st.InsertRun(ctx, &r); err != nil {
			t.Fatal(err)
		}
		if r.EndedAt != 0 { // a new run's row has no end nor spending yet
			if _, err := st.DB().ExecContext(ctx, `UPDATE runs SET ended_at = ?, tokens_in = ?, tokens_out = ?, cost_usd = ? WHERE id = ?`,
				r.EndedAt, r.TokensIn, r.TokensOut, r.CostUSD, r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}

	cin, sout := io.Pipe()
	sin, cout := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- srv.ServeStdio(ctx, sin, sout, 4) }()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(cin)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	defer func() {
		cout.Close()
		select {
		case <-served:
		case <-time.After(30 * time.Second):
			t.Error("ServeStdio did not return")
		}
		sout.Close()
		for range lines {
		}
	}()
	id := 0
	roundTrip := func(method, params string) string {
		t.Helper()
		id++
		if _, err := fmt.Fprintf(cout, `{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`+"\n", id, method, params); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`"id":%d,`, id)
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("output closed before the answer to %d", id)
				}
				if strings.Contains(l, want) && !strings.Contains(l, `"method":`) {
					// The call's record is committed before the next call
					// reads, so every answer sees the same transcript.
					st.Flush(ctx, main)
					return l
				}
			case <-timeout:
				t.Fatalf("no answer to %d", id)
			}
		}
	}
	roundTrip("initialize", `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"pin","version":"1"}}`)
	if _, err := io.WriteString(cout, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for _, c := range []struct{ name, args string }{
		{"sessions_list", `{}`},
		{"session_status", `{}`},
		{"sessions_list", `{}`},
		{"session_status", `{"key":"agent:main:subagent:b"}`},
		{"session_status", `{"key":"agent:main:subagent:a"}`},
		{"session_status", `{"key":"agent:main:subagent:b:subagent:c"}`},
		{"session_status", `{"key":"agent:main:ghost"}`},
		{"sessions_list", `{"limit":2}`},
		{"session_status", `{}`},
	} {
		l := roundTrip("tools/call", fmt.Sprintf(`{"name":%q,"arguments":%s}`, c.name, c.args))
		fmt.Fprintf(&got, "%s %s\n%s\n", c.name, c.args, uuidRE.ReplaceAllString(l, "<uuid>"))
	}

	golden := filepath.Join("testdata", "read_results.golden")
	if *updatePinned {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./mcp -run TestReadResultsPinned -update to write it)", err)
	}
	if got.String() != string(want) {
		g, w := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(g) && i < len(w); i++ {
			if g[i] != w[i] {
				t.Fatalf("answer differs from %s at line %d:\n got: %s\nwant: %s", golden, i+1, g[i], w[i])
			}
		}
		t.Fatalf("answers differ from %s in length: got %d lines, want %d", golden, len(g), len(w))
	}
}
