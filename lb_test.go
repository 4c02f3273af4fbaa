package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// httpInstance is a `sessionplane --http` process.
type httpInstance struct {
	cmd *exec.Cmd
	url string // http://127.0.0.1:PORT/mcp
}

// startHTTPInstance starts `sessionplane --http 127.0.0.1:0` on db with
// the config file cfg and the extra environment env (token variables).
func startHTTPInstance(t *testing.T, db, cfg string, env ...string) *httpInstance {
	t.Helper()
	cmd := exec.Command(buildBinary(t), "--http", "127.0.0.1:0", "--db", db, "--config", cfg)
	cmd.Env = append(append(os.Environ(), "SESSIONPLANE_CONFIG=", "SESSIONPLANE_HTTP_TOKEN=", "XDG_CONFIG_HOME="+t.TempDir()), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	in := &httpInstance{cmd: cmd}
	var printed []string
	sc := bufio.NewScanner(stderr)
	for in.url == "" && sc.Scan() {
		printed = append(printed, sc.Text())
		if i := strings.Index(sc.Text(), "url=http://"); i >= 0 {
			in.url = strings.Fields(sc.Text()[i+4:])[0]
		}
	}
	go io.Copy(io.Discard, stderr)
	if in.url == "" {
		t.Fatalf("no url logged: %s", strings.Join(printed, "\n"))
	}
	return in
}

// hop is one request the proxy forwarded.
type hop struct {
	backend int
	method  string // JSON-RPC method ("" for GET, DELETE and responses)
	body    string
}

// rrProxy is a round-robin reverse proxy on 127.0.0.1 with no session
// affinity, as a load balancer in front of several instances. A backend
// marked down (its health check failed) gets no more requests.
type rrProxy struct {
	t     *testing.T
	rps   []*httputil.ReverseProxy
	mu    sync.Mutex
	next  int
	down  map[int]bool
	hops  []hop
	hopCh chan struct{} // signalled on every hop
}

func newRRProxy(t *testing.T, backends ...string) (*rrProxy, string) {
	t.Helper()
	p := &rrProxy{t: t, down: map[int]bool{}, hopCh: make(chan struct{}, 1)}
	for _, b := range backends {
		u, err := url.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = ""
		p.rps = append(p.rps, httputil.NewSingleHostReverseProxy(u))
	}
	ts := httptest.NewServer(p)
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close() })
	return p, ts.URL + "/mcp"
}

func (p *rrProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var msg struct {
		Method string `json:"method"`
	}
	_ = json.Unmarshal(body, &msg)
	p.mu.Lock()
	i := p.next % len(p.rps)
	for p.down[i] {
		p.next++
		i = p.next % len(p.rps)
	}
	p.next++
	p.hops = append(p.hops, hop{backend: i, method: msg.Method, body: string(body)})
	p.mu.Unlock()
	select {
	case p.hopCh <- struct{}{}:
	default:
	}
	p.rps[i].ServeHTTP(w, r)
}

func (p *rrProxy) markDown(i int) {
	p.mu.Lock()
	p.down[i] = true
	p.mu.Unlock()
}

// backendsOf lists the backends that served requests of method.
func (p *rrProxy) backendsOf(method string) map[int]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int]bool{}
	for _, h := range p.hops {
		if h.method == method {
			out[h.backend] = true
		}
	}
	return out
}

// waitHop waits for a forwarded request whose body contains s and returns
// its backend.
func (p *rrProxy) waitHop(s string) int {
	p.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		p.mu.Lock()
		for _, h := range p.hops {
			if strings.Contains(h.body, s) {
				p.mu.Unlock()
				return h.backend
			}
		}
		p.mu.Unlock()
		select {
		case <-p.hopCh:
		case <-deadline:
			p.t.Fatalf("no request containing %q went through the proxy", s)
		}
	}
}

// rawStatus sends one request to url with a bearer token and a session id
// and returns the status.
func rawStatus(t *testing.T, method, url, token, sid, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

const lbTokens = `
[[mcp.http.tokens]]
name = "alice"
token_env = "LB_ALICE"

[[mcp.http.tokens]]
name = "bob"
token_env = "LB_BOB"
`

// lbCluster is n `sessionplane --http` processes on one database behind a
// round-robin proxy, serving the tokens of lbTokens.
type lbCluster struct {
	ins   []*httpInstance
	proxy *rrProxy
	url   string // the proxy's /mcp
	st    *store.Store
}

const lbAlice, lbBob = "alice-token-0123456789", "bob-token-0123456789"

func newLBCluster(t *testing.T, n int) *lbCluster {
	t.Helper()
	dir := t.TempDir()
	db := testdb.DSN(t, "sp.db")
	cfg := scriptedConfig(t, dir, `{"conversations": [
		{"match": "slow", "turns": [{"delay_ms": 600000, "text": "never"}]},
		{"turns": [{"text": "fine"}]}]}`, lbTokens)
	env := []string{"LB_ALICE=" + lbAlice, "LB_BOB=" + lbBob}
	cl := &lbCluster{}
	var urls []string
	for i := 0; i < n; i++ {
		in := startHTTPInstance(t, db, cfg, env...)
		cl.ins, urls = append(cl.ins, in), append(urls, in.url)
	}
	cl.proxy, cl.url = newRRProxy(t, urls...)
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cl.st = st
	return cl
}

// killInflight waits for the tool call whose arguments contain task to
// run on an instance, kills that instance with SIGKILL and takes it out of
// the proxy (the load balancer's health check); it returns its index.
// failed, when non-nil, reports the call ending early.
func (cl *lbCluster) killInflight(t *testing.T, task string, failed func() string) int {
	t.Helper()
	victim := cl.proxy.waitHop(task)
	lbWaitFor(t, "the blocking spawn's run to start", func() bool {
		if msg := failed(); msg != "" {
			t.Fatalf("the blocking spawn ended before the kill: %s", msg)
		}
		var n int
		return cl.st.QueryRow(context.Background(), `SELECT count(*) FROM runs WHERE task = ? AND state = 'running'`, task).Scan(&n) == nil && n == 1
	})
	if err := cl.ins[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cl.proxy.markDown(victim)
	return victim
}

// Three real `sessionplane --http` processes on one database behind a
// round-robin proxy with no affinity: an mcp-go client initializes on one
// and its tool calls reach every one; another token cannot use its session
// id on any; a DELETE through the proxy ends the session on all. Then the
// instance holding an in-flight call is killed with SIGKILL: the client
// gets a transport error, the store says what committed (the spawn's
// child exists), and the same session goes on through the survivor.
func TestHTTPInstancesBehindALoadBalancer(t *testing.T) {
	cl := newLBCluster(t, 3) // the README's recipe runs three
	ins, proxy, lb, st := cl.ins, cl.proxy, cl.url, cl.st
	alice, bob := lbAlice, lbBob
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connect := func() *client.Client {
		c, err := client.NewStreamableHttpClient(lb, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + alice}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		req := mcp.InitializeRequest{}
		req.Params.ProtocolVersion = "2025-11-25"
		req.Params.ClientInfo = mcp.Implementation{Name: "lb-test", Version: "1"}
		if _, err := c.Initialize(ctx, req); err != nil {
			t.Fatalf("initialize through the proxy: %v", err)
		}
		return c
	}
	call := func(c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
		req := mcp.CallToolRequest{}
		req.Params.Name = name
		req.Params.Arguments = args
		return c.CallTool(ctx, req)
	}

	c := connect()
	sid := c.GetSessionId()
	for i := 0; i < 6 && len(proxy.backendsOf("tools/call")) < len(ins); i++ {
		res, err := call(c, "session_status", map[string]any{})
		if err != nil || res.IsError {
			t.Fatalf("tools/call through the proxy: %v %+v", err, res)
		}
	}
	if init, calls := proxy.backendsOf("initialize"), proxy.backendsOf("tools/call"); len(init) != 1 || len(calls) != len(ins) {
		t.Fatalf("initialize went to %v and tools/call to %v: want one and every instance", init, calls)
	}
	for i, in := range ins {
		if code := rawStatus(t, http.MethodPost, in.url, bob, sid, `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}`); code != http.StatusNotFound {
			t.Fatalf("bob's token with alice's session on instance %d: %d, want 404", i, code)
		}
	}

	// DELETE through the proxy ends a session on both instances.
	d := connect()
	dsid := d.GetSessionId()
	if code := rawStatus(t, http.MethodDelete, lb, alice, dsid, ""); code != http.StatusOK {
		t.Fatalf("DELETE through the proxy: %d", code)
	}
	for i, in := range ins {
		if code := rawStatus(t, http.MethodPost, in.url, alice, dsid, `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}`); code != http.StatusNotFound {
			t.Fatalf("the DELETEd session on instance %d: %d, want 404", i, code)
		}
	}

	// SIGKILL the instance holding an in-flight call.
	type result struct {
		res *mcp.CallToolResult
		err error
	}
	got := make(chan result, 1)
	go func() {
		res, err := call(c, "spawn_agent", map[string]any{"task": "slow analysis victim"})
		got <- result{res, err}
	}()
	victim := cl.killInflight(t, "slow analysis victim", func() string {
		select {
		case r := <-got:
			return fmt.Sprintf("%v %+v", r.err, r.res)
		default:
			return ""
		}
	})
	r := <-got
	if r.err == nil {
		t.Fatalf("the call in flight on the killed instance returned %+v, want a transport error", r.res)
	}
	t.Logf("the client saw: %v", r.err)

	res, err := call(c, "sessions_list", map[string]any{})
	if err != nil || res.IsError {
		t.Fatalf("retry with the same session through the proxy: %v %+v", err, res)
	}
	var body strings.Builder
	for _, ct := range res.Content {
		if tc, ok := ct.(mcp.TextContent); ok {
			body.WriteString(tc.Text)
		}
	}
	var child string
	if err := st.QueryRow(ctx, `SELECT child_key FROM runs WHERE task = ?`, "slow analysis victim").Scan(&child); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body.String(), child) {
		t.Fatalf("the spawn committed before the kill (child %s) is not in the survivor's sessions_list: %s", child, body.String())
	}
	proxy.mu.Lock()
	last := proxy.hops[len(proxy.hops)-1]
	proxy.mu.Unlock()
	if last.backend == victim {
		t.Fatalf("the retry went to the killed instance %d", victim)
	}
}

// lbWaitFor polls cond until it holds (bounded).
func lbWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
