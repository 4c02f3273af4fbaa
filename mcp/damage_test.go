package mcp

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// What was seen 5, through the tools: on a file with a damaged page, a call
// that needs the page fails with an error naming the file and `db check`,
// the damage is logged, and calls that do not need it are still served.
//
// On SQLite always: it writes junk over a page of the database file.
func TestDamagedDatabaseThroughTools(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sp.db")
	ctx := context.Background()
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnsureSession(ctx, store.Session{Key: "agent:main:notes"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := st.AppendMessage(ctx, store.Message{SessionKey: "agent:main:notes", Role: store.RoleUser, Trust: store.TrustUser, Content: store.Content{Text: "deploy note"}}); err != nil {
			t.Fatal(err)
		}
	}
	var root, pageSize int64
	if err := st.DB().QueryRow(`SELECT rootpage FROM sqlite_master WHERE name = 'messages'`).Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := st.DB().QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	st.Close()
	junk := make([]byte, pageSize)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range junk {
		junk[i] = byte(r.IntN(256))
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(junk, (root-1)*pageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// The store's writer logs from its own goroutine (an async record's
	// failure) while the test reads: the buffer is locked.
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	st, err = store.Open(ctx, path, &store.Options{Logger: log})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := config.Default()
	cfg.Store.Path = path
	srv, err := Build(cfg, st, &BuildOptions{Version: "test", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := client.NewInProcessClient(srv.MCPServer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	f2 := &fixture{t: t, st: st, srv: srv, c: c, agent: "main"}
	res := f2.call("sessions_history", map[string]any{"key": "agent:main:notes"}, nil)
	f2.wantError(res, path, "damaged", "db check")
	if !strings.Contains(logs.String(), "DATABASE DAMAGED") {
		t.Fatalf("damage not logged: %q", logs.String())
	}
	res = f2.call("task_list", map[string]any{"action": "create", "list": "still", "title": "served"}, nil)
	if res.IsError {
		t.Fatalf("a call that does not need the damaged page failed: %s", text(res))
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger writing from other
// goroutines while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
