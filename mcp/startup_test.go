package mcp

import (
	"context"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// initializeWrites starts a server on the database at path, initializes a
// client and returns the waited writes the initialize made.
func initializeWrites(t *testing.T, path string) uint64 {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Parse([]byte(""), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := Build(cfg, st, &BuildOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := client.NewInProcessClient(srv.MCPServer())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	before := st.WriteStats().Waited
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	n := st.WriteStats().Waited - before
	if sess, err := st.GetSession(ctx, srv.Caller().Key); err != nil || sess.Kind != store.KindMain || sess.Label != "MCP client" {
		t.Fatalf("own session after initialize: %+v %v", sess, err)
	}
	return n
}

// The client's own session is created by the first initialize on a
// database; later starts find it with a read, no write before the reply.
func TestInitializeWritesOnlyANewOwnSession(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	if n := initializeWrites(t, path); n != 1 {
		t.Fatalf("first initialize: %d waited writes, want 1 (the own session)", n)
	}
	if n := initializeWrites(t, path); n != 0 {
		t.Fatalf("second initialize: %d waited writes, want 0", n)
	}
}
