package mcp

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// BenchmarkSessionsList10k: sessions_list (limit 20 and 100) through an
// in-process MCP client over 10,000 sessions.
func BenchmarkSessionsList10k(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 10_000; i++ {
		if _, err := st.EnsureSession(ctx, store.Session{Key: fmt.Sprintf("agent:main:s%05d", i), Label: fmt.Sprintf("session %d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := Build(config.Default(), st, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.NewInProcessClient(srv.MCPServer())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Start(ctx)
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	if _, err := c.Initialize(ctx, init); err != nil {
		b.Fatal(err)
	}
	for _, limit := range []int{20, 100} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			req := mcp.CallToolRequest{}
			req.Params.Name = "sessions_list"
			req.Params.Arguments = map[string]any{"limit": limit}
			for i := 0; i < b.N; i++ {
				res, err := c.CallTool(ctx, req)
				if err != nil || res.IsError {
					b.Fatalf("%v %v", err, res)
				}
			}
		})
	}
}
