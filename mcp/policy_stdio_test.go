package mcp

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// newStdioEnv serves the real server over stdio (in-memory pipes) to an
// mcp-go stdio client: unlike the in-process transport, server-initiated
// requests (elicitation) there are protocol messages, which mcp-go refuses
// to send to a client of the 2026-07-28 era.
func newStdioEnv(t *testing.T, toml, era string, opts ...client.ClientOption) *env {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, testdb.DSN(t, "sp.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Build(cfg, st, &BuildOptions{Version: "test"})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	toClient, fromServer := io.Pipe()
	toServer, fromClient := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.ServeStdio(ctx, toServer, fromServer, 4)
	}()
	opts = append(opts, client.WithProtocolVersion(era))
	c := client.NewClient(transport.NewIO(toClient, fromClient, io.NopCloser(strings.NewReader(""))), opts...)
	t.Cleanup(func() {
		c.Close()
		cancel()
		fromServer.Close()
		toServer.Close()
		wg.Wait()
		srv.Close() // ends the server's warm handler goroutines
		st.Close()
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if got := c.ProtocolVersion(); got != era {
		t.Fatalf("negotiated %q, want %q", got, era)
	}
	if _, err := st.EnsureSession(ctx, store.Session{Key: "agent:main:x", AgentID: "main"}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: st, srv: srv, c: c, agent: cfg.MCP.Agent}
	f.messages("agent:main:x", secretOf("agent:main:x"))
	return &env{fixture: f, ids: map[string]string{}}
}

// Approval over a real protocol connection, in both eras, with a client
// that has an elicitation handler that approves. What SPEC §4/§7 asks:
// elicit asks, or (when it cannot ask) refuses naming [approval] as the
// fix; auto asks, or proceeds with a note. In the 2026-07-28 era asking
// needs multi round-trip requests (server.InputRequestBuilder), so there
// "refused naming [approval]" and "note" are the acceptable fallbacks.
func TestApprovalOverStdio(t *testing.T) {
	tests := []struct {
		era, mode string
		want      []string // acceptable outcomes: asked | note | refused-approval
		knownBug  string
	}{
		{"2025-11-25", "elicit", []string{"asked"}, ""},
		{"2025-11-25", "auto", []string{"asked"}, ""},
		{"2026-07-28", "elicit", []string{"asked", "refused-approval"}, ""},
		{"2026-07-28", "auto", []string{"asked", "note"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.era+"/"+tt.mode, func(t *testing.T) {
			el := &elicitor{respond: matrixClients["accept"]}
			e := newStdioEnv(t, "[approval]\nread-session = \""+tt.mode+"\"\n", tt.era, client.WithElicitationHandler(el))
			e.elic = el
			o := e.tool("sessions_history", map[string]any{"key": "agent:main:x"})
			var got string
			switch {
			case !o.isError && len(el.requests()) == 1:
				got = "asked"
			case !o.isError && strings.Contains(o.text, "Note:") && strings.Contains(o.text, "[approval] read-session"):
				got = "note"
			case o.refused() && o.rule == "approval.read-session" && strings.Contains(o.text, "[approval] read-session ="):
				got = "refused-approval"
			case o.refused():
				got = "refused"
			default:
				got = "other"
			}
			t.Logf("%s %s: %d elicitation(s); %s: %s", tt.era, tt.mode, len(el.requests()), got, o)
			ok := false
			for _, w := range tt.want {
				ok = ok || got == w
			}
			switch {
			case ok && tt.knownBug != "":
				t.Errorf("marked as a known bug (%s) but works: remove the mark", tt.knownBug)
			case ok:
			case tt.knownBug != "":
				t.Logf("known failure (%s): got %s, want one of %v", tt.knownBug, got, tt.want)
				// Whatever the bug, it fails closed.
				if got != "refused" {
					t.Errorf("not a forbidden refusal: %s", o)
				}
			default:
				t.Errorf("got %s, want one of %v: %s", got, tt.want, o)
			}
		})
	}
}
