package mcp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/goleak"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// TestMain fails the package when a goroutine its tests started is still
// running after the last test: the server's Close (cron, run manager,
// notifier), the store's writer and the in-process client must all end
// theirs.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openFDs counts this process's open file descriptors (Linux /proc).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors here: %v", err)
	}
	return len(ents)
}

// serverCycle opens a store, builds and starts the server, runs a blocking
// spawn (scripted child) through an in-process client and an initialize
// over Streamable HTTP on loopback, then closes everything in order.
func serverCycle(t *testing.T, db string) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Parse([]byte(fuzzConfig), "leak.toml")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := provider.ParseScript([]byte(fuzzScript))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Build(cfg, st, &BuildOptions{Providers: map[string]provider.Provider{"script": provider.NewScripted("script", sc, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := client.NewInProcessClient(srv.MCPServer())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	init.Params.ClientInfo = mcp.Implementation{Name: "leak", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "spawn_agent"
	req.Params.Arguments = map[string]any{"task": "answer"}
	if res, err := c.CallTool(ctx, req); err != nil || res.IsError {
		t.Fatalf("spawn_agent: %v %+v", err, res)
	}

	hctx, stop := context.WithCancel(ctx)
	addr := make(chan net.Addr, 1)
	served := make(chan error, 1)
	auth, _, err := httpauth.FromConfig(cfg, &httpauth.Options{Getenv: func(string) string { return "leak-token" }})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		served <- srv.ServeHTTP(hctx, "127.0.0.1:0", HTTPOptions{Auth: auth}, func(a net.Addr) { addr <- a })
	}()
	var a net.Addr
	select {
	case a = <-addr:
	case err := <-served:
		t.Fatalf("ServeHTTP: %v", err)
	}
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"leak","version":"1"}}}`
	hreq, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/mcp", a), strings.NewReader(body))
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json, text/event-stream")
	hreq.Header.Set("Authorization", "Bearer leak-token")
	resp, err := hc.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), "sessionplane") {
		t.Fatalf("initialize over HTTP: %d %s", resp.StatusCode, out)
	}
	tr.CloseIdleConnections()
	stop()
	if err := <-served; err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("client close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("server close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("store close: %v", err)
	}
}

// Building, serving (in-process and Streamable HTTP) and closing the server
// and its store 20 times leaves no file descriptor open and no goroutine
// running.
func TestServerOpenCloseLeavesNoFileDescriptorsOrGoroutines(t *testing.T) {
	db := testdb.DSN(t, "leak.db")
	serverCycle(t, db) // warm up: anything opened once per process is opened now
	before := openFDs(t)
	already := goleak.IgnoreCurrent() // goroutines of tests that ran before this one
	for i := 0; i < 20; i++ {
		serverCycle(t, db)
	}
	// Wait (bounded) for the count to settle, as goleak waits for
	// goroutines: a socket another test's leftover client is still
	// closing is not ours; a leaked descriptor stays open.
	after := openFDs(t)
	for deadline := time.Now().Add(5 * time.Second); after > before && time.Now().Before(deadline); after = openFDs(t) {
		time.Sleep(50 * time.Millisecond)
	}
	if after > before {
		t.Fatalf("open file descriptors grew from %d to %d over 20 server cycles", before, after)
	}
	// Nothing of the 21 servers is still running (the package's TestMain
	// checks again at the end, across every test).
	goleak.VerifyNone(t, already)
}
