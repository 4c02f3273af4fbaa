package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// stdioOn serves the real server for toml over stdio (in-memory pipes) on
// the database at dbPath, opened by this "process" alone, to an mcp-go
// stdio client: several of them on one path are several processes
// sharing a database.
func stdioOn(t *testing.T, dbPath, toml string, providers map[string]provider.Provider) *fixture {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Build(cfg, st, &BuildOptions{Version: "test", Providers: providers})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	toClient, fromServer := io.Pipe()
	toServer, fromClient := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.ServeStdio(ctx, toServer, fromServer, 4)
	}()
	c := client.NewClient(transport.NewIO(toClient, fromClient, io.NopCloser(strings.NewReader(""))))
	t.Cleanup(func() {
		c.Close()
		cancel()
		fromServer.Close()
		toServer.Close()
		wg.Wait()
		srv.Close()
		st.Close()
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return &fixture{t: t, st: st, srv: srv, c: c, agent: cfg.MCP.Agent}
}

const observerPreset = `
[agents.presets.observer]
tools.allow = ["sessions_list", "sessions_history", "session_status", "sessions_search"]
sessions.key_prefix = "agent:research:"
`

func (f *fixture) readResource(uri string) (string, error) {
	f.t.Helper()
	req := mcp.ReadResourceRequest{}
	req.Params.URI = uri
	res, err := f.c.ReadResource(context.Background(), req)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range res.Contents {
		if tc, ok := c.(mcp.TextResourceContents); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String(), nil
}

// Reproduction 2 of issue 10, over stdio: an observer (--preset observer,
// no --agent) and an unrestricted client of agent main on one database.
// The observer's own session is agent:main:observer, not the unrestricted
// client's agent:main:main: "current", session://main, session://current
// and run:// of the other client's run show it nothing of the other.
func TestObserverAndUnrestrictedClientDoNotShareASession(t *testing.T) {
	db := testdb.DSN(t, "sp.db")
	const secret = "TOPSECRET-unrestricted-7731"
	base := fmt.Sprintf(spawnConfig, "") + observerPreset
	u := stdioOn(t, db, base, map[string]provider.Provider{"script": scripted(t)})
	o := stdioOn(t, db, base+"\n[mcp]\npreset = \"observer\"\n", map[string]provider.Provider{"script": scripted(t)})
	if got := u.srv.Caller().Key; got != "agent:main:main" {
		t.Fatalf("unrestricted client's own session %q, want agent:main:main", got)
	}
	if got := o.srv.Caller().Key; got != "agent:main:observer" {
		t.Fatalf("observer's own session %q, want agent:main:observer", got)
	}
	ctx := context.Background()

	// The unrestricted client works: a child run, and the secret in its transcript.
	out := u.spawn(map[string]any{"task": "quick " + secret, "label": "private"})
	waitFor(t, "the unrestricted client's run to end", func() bool {
		r, err := u.st.GetRun(ctx, out.RunID)
		return err == nil && store.Terminal(r.State)
	})
	u.call("sessions_list", map[string]any{"filter": secret}, nil)
	if hist := text(u.call("sessions_history", map[string]any{"key": "current", "includeTools": true}, nil)); !strings.Contains(hist, secret) {
		t.Fatalf("control: the unrestricted client's own transcript lacks the secret: %s", hist)
	}

	// The observer sees none of it, by any of the ways it names itself.
	for _, key := range []string{"current", "main"} {
		res := o.call("sessions_history", map[string]any{"key": key, "includeTools": true}, nil)
		if strings.Contains(text(res), secret) || strings.Contains(text(res), out.RunID) {
			t.Errorf("observer sessions_history {key:%q} leaked the unrestricted client's session: %s", key, text(res))
		}
		if res.IsError {
			t.Errorf("observer sessions_history {key:%q}: its own session must be readable: %s", key, text(res))
		}
	}
	res := o.call("sessions_history", map[string]any{"key": "agent:main:main"}, nil)
	o.wantError(res, "forbidden", "key_prefix")
	for _, uri := range []string{"session://main", "session://current", "session://agent:main:main", "run://" + out.RunID} {
		body, err := o.readResource(uri)
		if strings.Contains(body, secret) || (err != nil && strings.Contains(err.Error(), secret)) {
			t.Errorf("observer resources/read %s leaked the secret: %s %v", uri, body, err)
		}
		switch {
		case uri == "session://agent:main:main" || strings.HasPrefix(uri, "run://"):
			if err == nil {
				t.Errorf("observer resources/read %s: want a refusal, got %s", uri, body)
			}
		case err != nil || !strings.Contains(body, `"agent:main:observer"`):
			t.Errorf("observer resources/read %s: want its own session agent:main:observer, got %s %v", uri, body, err)
		}
	}
	for _, p := range []string{"sessions_search", "sessions_list"} {
		res := o.call(p, map[string]any{"query": secret, "filter": secret}, nil)
		if strings.Contains(text(res), secret+"\"") || strings.Contains(text(res), "agent:main:main") {
			t.Errorf("observer %s leaked the unrestricted client's session: %s", p, text(res))
		}
	}

	// The observer's own session is a client session: a send delivers to
	// it (no model of ours answers there), and the observer reads it.
	var sent sendOut
	u.call("sessions_send", map[string]any{"key": "agent:main:observer", "message": "hello observer"}, &sent)
	if sent.Status != "delivered" {
		t.Fatalf("sessions_send to the observer's own session: %+v, want delivered", sent)
	}
	hist := text(o.call("sessions_history", map[string]any{"key": "current"}, nil))
	if !strings.Contains(hist, "hello observer") || strings.Contains(hist, secret) {
		t.Fatalf("observer's own history: %s", hist)
	}
	sess, err := o.st.GetSession(ctx, "agent:main:observer")
	if err != nil || sess.Kind != store.KindMain || sess.Preset != "observer" {
		t.Fatalf("observer's own session row: %+v %v", sess, err)
	}
	b, _ := json.Marshal(sess)
	t.Logf("observer's own session: %s", b)
}

// An own session created by a principal with another policy is refused:
// an observer told to use the unrestricted client's session gets no tool
// that would show it.
func TestOwnSessionOfAnotherPolicyIsRefused(t *testing.T) {
	db := testdb.DSN(t, "sp.db")
	base := fmt.Sprintf(spawnConfig, "") + observerPreset
	u := stdioOn(t, db, base+"\n[mcp]\nsession = \"agent:main:shared\"\n", map[string]provider.Provider{"script": scripted(t)})
	u.call("sessions_list", map[string]any{"filter": "TOPSECRET"}, nil)
	o := stdioOn(t, db, base+"\n[mcp]\npreset = \"observer\"\nsession = \"agent:main:shared\"\n", map[string]provider.Provider{"script": scripted(t)})
	res := o.call("sessions_history", map[string]any{"key": "current"}, nil)
	o.wantError(res, "own session", "preset")
	if strings.Contains(text(res), "TOPSECRET") {
		t.Fatalf("refusal leaked: %s", text(res))
	}
	for _, uri := range []string{"session://current", "session://main", "session://agent:main:shared"} {
		if body, err := o.readResource(uri); err == nil || strings.Contains(body, "TOPSECRET") {
			t.Errorf("resources/read %s with a refused own session: %s %v, want a refusal", uri, body, err)
		}
	}
	if tl, err := o.c.ListTools(context.Background(), mcp.ListToolsRequest{}); err != nil || len(tl.Tools) != 0 {
		t.Errorf("tools/list with a refused own session: %v %v, want none", tl, err)
	}
}
