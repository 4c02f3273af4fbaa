package mcp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// httpEnv is the real server behind the real HTTP handler on a loopback
// test server, with a clock the test moves for idle expiry.
type httpEnv struct {
	t   *testing.T
	st  *store.Store
	srv *Server
	h   *HTTPHandler
	url string

	mu  sync.Mutex
	now time.Time
}

func (e *httpEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *httpEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// newHTTPEnv serves toml over HTTP; env holds the token variables.
func newHTTPEnv(t *testing.T, toml string, env map[string]string, opts HTTPOptions) *httpEnv {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(t, "sp.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Build(cfg, st, &BuildOptions{Version: "test", Providers: map[string]provider.Provider{"script": scripted(t)}})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	auth, _, err := httpauth.FromConfig(cfg, &httpauth.Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	e := &httpEnv{t: t, st: st, srv: srv, now: time.Unix(1_800_000_000, 0)}
	opts.Auth = auth
	opts.Now = e.clock
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = time.Duration(cfg.MCP.HTTP.SessionIdleMinutes) * time.Minute
	}
	if opts.AllowedOrigins == nil {
		opts.AllowedOrigins = cfg.MCP.HTTP.AllowedOrigins
	}
	h, err := srv.NewHTTPHandler(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	e.h, e.url = h, ts.URL+"/mcp"
	t.Cleanup(func() {
		ts.CloseClientConnections()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(sctx)
		ts.Close()
		srv.Close()
		st.Close()
	})
	return e
}

// client connects an mcp-go Streamable HTTP client with a bearer token,
// listening for server notifications on the GET stream.
func (e *httpEnv) client(token string, onNote func(mcp.JSONRPCNotification)) *fixture {
	e.t.Helper()
	ctx := context.Background()
	c, err := client.NewStreamableHttpClient(e.url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}), transport.WithContinuousListening())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if onNote != nil {
		c.OnNotification(onNote)
	}
	if err := c.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	init.Params.ClientInfo = mcp.Implementation{Name: "http-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		e.t.Fatalf("initialize: %v", err)
	}
	return &fixture{t: e.t, st: e.st, srv: e.srv, c: c}
}

// raw sends one HTTP request as curl would and returns status, headers
// and body.
func (e *httpEnv) raw(method, token, session, origin, body string) (int, http.Header, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`
const listBody = `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`

// initSession initializes over raw HTTP and returns the Mcp-Session-Id.
func (e *httpEnv) initSession(token string) string {
	e.t.Helper()
	code, h, body := e.raw(http.MethodPost, token, "", "", initBody)
	if code != http.StatusOK || h.Get("Mcp-Session-Id") == "" {
		e.t.Fatalf("initialize: %d %s", code, body)
	}
	return h.Get("Mcp-Session-Id")
}

const twoTokenConfig = `
[agents.presets.watcher]
tools.allow = ["sessions_list", "sessions_history", "session_status", "sessions_search"]
sessions.key_prefix = "agent:research:"

[[mcp.http.tokens]]
name = "alice"
token_env = "ALICE"

[[mcp.http.tokens]]
name = "bob"
token_env = "BOB"
preset = "watcher"
`

var twoTokens = map[string]string{"ALICE": "alice-token-0123456789", "BOB": "bob-token-0123456789"}

// Two HTTP tokens in one process are two principals with their own
// sessions; A's announce reaches A (prefix or notification), never B, and
// B cannot read A's session (reproduction 2, over HTTP).
func TestHTTPTwoTokensTwoPrincipals(t *testing.T) {
	e := newHTTPEnv(t, fmt.Sprintf(spawnConfig, "")+twoTokenConfig, twoTokens, HTTPOptions{})
	var mu sync.Mutex
	notes := map[string][]string{}
	record := func(who string) func(mcp.JSONRPCNotification) {
		return func(n mcp.JSONRPCNotification) {
			mu.Lock()
			defer mu.Unlock()
			notes[who] = append(notes[who], fmt.Sprint(n.Params.AdditionalFields))
		}
	}
	a := e.client(twoTokens["ALICE"], record("a"))
	b := e.client(twoTokens["BOB"], record("b"))

	var st struct {
		Key string `json:"key"`
	}
	a.call("session_status", map[string]any{"key": "current"}, &st)
	if st.Key != "agent:main:main" {
		t.Fatalf("alice's own session %q, want agent:main:main", st.Key)
	}
	b.call("session_status", map[string]any{"key": "current"}, &st)
	if st.Key != "agent:main:watcher" {
		t.Fatalf("bob's own session %q, want agent:main:watcher", st.Key)
	}
	if tl, err := b.c.ListTools(context.Background(), mcp.ListToolsRequest{}); err != nil || len(tl.Tools) != 4 {
		t.Fatalf("bob's tools/list: %d tools, %v; want the 4 of preset watcher", len(tl.Tools), err)
	}

	const secret = "ALICE-ONLY-4242"
	out := a.spawn(map[string]any{"task": "quick " + secret, "label": "alice's"})
	waitFor(t, "alice's run to end", func() bool {
		r, err := e.st.GetRun(context.Background(), out.RunID)
		return err == nil && store.Terminal(r.State)
	})
	// Alice gets the announce: as a notification on her stream or as the
	// prefix of her next tool result.
	prefix := ""
	waitFor(t, "alice's announce", func() bool {
		mu.Lock()
		got := strings.Contains(strings.Join(notes["a"], "\n"), out.RunID)
		mu.Unlock()
		if got || strings.Contains(prefix, out.RunID) {
			return true
		}
		prefix += text(a.call("sessions_list", map[string]any{}, nil))
		return strings.Contains(prefix, out.RunID)
	})
	// Bob gets nothing of it, by any way.
	for i := 0; i < 3; i++ {
		res := text(b.call("sessions_list", map[string]any{}, nil))
		if strings.Contains(res, out.RunID) || strings.Contains(res, secret) || strings.Contains(res, "[announce]") {
			t.Fatalf("bob's tool result carried alice's announce: %s", res)
		}
	}
	for _, key := range []string{"current", "main", "agent:main:main"} {
		res := b.call("sessions_history", map[string]any{"key": key, "includeTools": true}, nil)
		if strings.Contains(text(res), secret) {
			t.Fatalf("bob read alice's session through %q: %s", key, text(res))
		}
	}
	if body, err := b.readResource("run://" + out.RunID); err == nil || strings.Contains(body, secret) {
		t.Fatalf("bob read alice's run: %s %v", body, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if s := strings.Join(notes["b"], "\n"); strings.Contains(s, out.RunID) || strings.Contains(s, secret) {
		t.Fatalf("bob was notified of alice's run: %s", s)
	}
}

// Reproduction 7 of issue 10: without a token, with a wrong one, with a
// session id never issued, deleted or another principal's, with a bad
// Origin; GET without a session.
func TestHTTPRefusals(t *testing.T) {
	e := newHTTPEnv(t, twoTokenConfig+"\n[mcp.http]\nallowed_origins = [\"http://localhost:3000\"]\n", twoTokens, HTTPOptions{})
	alice, bob := twoTokens["ALICE"], twoTokens["BOB"]
	for _, tok := range []string{"", "nope", alice[:len(alice)-1], alice + "x"} {
		code, h, body := e.raw(http.MethodPost, tok, "", "", initBody)
		if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || strings.Contains(body, "sessionplane\"") {
			t.Errorf("token %q: %d %q %s; want 401 with WWW-Authenticate: Bearer", tok, code, h.Get("WWW-Authenticate"), body)
		}
	}
	sid := e.initSession(alice)
	if code, _, body := e.raw(http.MethodPost, alice, sid, "", listBody); code != http.StatusOK || !strings.Contains(body, "sessions_list") {
		t.Fatalf("control: tools/list on a live session: %d %s", code, body)
	}
	never := "mcp-session-00000000-0000-4000-8000-000000000000"
	for name, c := range map[string]struct{ token, sid, method string }{
		"never issued":             {alice, never, http.MethodPost},
		"not even an id":           {alice, "whatever", http.MethodPost},
		"another principal's":      {bob, sid, http.MethodPost},
		"GET never issued":         {alice, never, http.MethodGet},
		"DELETE another principal": {bob, sid, http.MethodDelete},
	} {
		if code, _, body := e.raw(c.method, c.token, c.sid, "", listBody); code != http.StatusNotFound {
			t.Errorf("%s: %d %s, want 404", name, code, body)
		}
	}
	if code, _, _ := e.raw(http.MethodGet, alice, "", "", ""); code != http.StatusBadRequest {
		t.Errorf("GET without Mcp-Session-Id: %d, want 400", code)
	}
	if code, _, body := e.raw(http.MethodDelete, alice, sid, "", ""); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, _, _ := e.raw(http.MethodPost, alice, sid, "", listBody); code != http.StatusNotFound {
		t.Errorf("a DELETEd session: %d, want 404", code)
	}
	for origin, want := range map[string]int{"http://evil.example": 403, "null": 403, "http://localhost:3000": 200} {
		if code, _, body := e.raw(http.MethodPost, alice, "", origin, initBody); code != want {
			t.Errorf("Origin %s: %d %s, want %d", origin, code, body, want)
		}
	}
	if code, _, _ := e.raw(http.MethodPost, "", "", "http://evil.example", initBody); code != http.StatusForbidden {
		t.Errorf("bad Origin without a token: %d, want 403", code)
	}
}

// Idle sessions expire (404 after session_idle_minutes without a request,
// on use or by the sweeper) and live ones are capped at max_sessions.
func TestHTTPIdleExpiryAndCap(t *testing.T) {
	e := newHTTPEnv(t, twoTokenConfig+"\n[mcp.http]\nsession_idle_minutes = 30\nmax_sessions = 3\n", twoTokens, HTTPOptions{MaxSessions: 3})
	alice := twoTokens["ALICE"]
	s1 := e.initSession(alice)
	e.advance(29 * time.Minute)
	if code, _, _ := e.raw(http.MethodPost, alice, s1, "", listBody); code != http.StatusOK {
		t.Fatalf("a session used within 30 minutes: %d", code)
	}
	e.advance(29 * time.Minute) // 29 minutes after its last use
	if code, _, _ := e.raw(http.MethodPost, alice, s1, "", listBody); code != http.StatusOK {
		t.Fatalf("use renews the idle time: %d", code)
	}
	e.advance(30 * time.Minute)
	if code, _, body := e.raw(http.MethodPost, alice, s1, "", listBody); code != http.StatusNotFound || !strings.Contains(body, "expired") {
		t.Fatalf("a session idle for 30 minutes: %d %s, want 404 expired", code, body)
	}
	if n := e.h.Sessions(); n != 0 {
		t.Fatalf("%d live sessions after expiry, want 0", n)
	}

	ids := []string{e.initSession(alice), e.initSession(alice), e.initSession(alice)}
	if code, h, body := e.raw(http.MethodPost, alice, "", "", initBody); code != http.StatusServiceUnavailable || !strings.Contains(body, "max_sessions") || h.Get("Retry-After") == "" {
		t.Fatalf("initialize beyond max_sessions: %d %s, want 503 naming max_sessions", code, body)
	}
	if code, _, _ := e.raw(http.MethodDelete, alice, ids[0], "", ""); code != http.StatusOK {
		t.Fatalf("DELETE: %d", code)
	}
	ids[0] = e.initSession(alice) // a slot is free again
	e.advance(31 * time.Minute)
	e.h.Sweep()
	if n := e.h.Sessions(); n != 0 {
		t.Fatalf("%d live sessions after the sweep, want 0", n)
	}
	for _, id := range ids {
		if code, _, _ := e.raw(http.MethodPost, alice, id, "", listBody); code != http.StatusNotFound {
			t.Fatalf("swept session %s: %d, want 404", id, code)
		}
	}
	e.initSession(alice) // the cap counts live sessions only
}

// 10,000 initialize + DELETE leave the heap near where it started: no
// per-session state survives its session (issue 10 saw 33 → 253 MB after
// 15,000 initializes, never released).
func TestHTTPMemoryReturnsAfterSessionsEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 sessions: not in -short")
	}
	e := newHTTPEnv(t, twoTokenConfig, twoTokens, HTTPOptions{MaxSessions: 100})
	alice := twoTokens["ALICE"]
	cycle := func() {
		req := httptest.NewRequest(http.MethodPost, "http://localhost/mcp", strings.NewReader(initBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+alice)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		sid := w.Header().Get("Mcp-Session-Id")
		if w.Code != http.StatusOK || sid == "" {
			t.Fatalf("initialize: %d %s", w.Code, w.Body.String())
		}
		del := httptest.NewRequest(http.MethodDelete, "http://localhost/mcp", nil)
		del.Header.Set("Authorization", "Bearer "+alice)
		del.Header.Set("Mcp-Session-Id", sid)
		w = httptest.NewRecorder()
		e.h.ServeHTTP(w, del)
		if w.Code != http.StatusOK {
			t.Fatalf("DELETE: %d %s", w.Code, w.Body.String())
		}
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for i := 0; i < 200; i++ { // warm up: caches, pools, the own session row
		cycle()
	}
	before := heap()
	for i := 0; i < 10_000; i++ {
		cycle()
	}
	after := heap()
	t.Logf("heap after GC: %d KiB before, %d KiB after 10,000 initialize+DELETE", before/1024, after/1024)
	if after > before+4<<20 {
		t.Fatalf("heap grew by %d KiB over 10,000 sessions that ended (want < 4 MiB)", (after-before)/1024)
	}
	if n := e.h.Sessions(); n != 0 {
		t.Fatalf("%d sessions still in the table", n)
	}
	o, _ := e.srv.owns("agent:main:main")
	if n := len(o.connList()); n != 0 {
		t.Fatalf("%d connections still remembered for alice", n)
	}
}

// gateProvider answers only once release is closed, and says when a
// request reached it.
type gateProvider struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (*gateProvider) Name() string { return "script" }

func (g *gateProvider) Complete(ctx context.Context, _ provider.Request) (*provider.Response, error) {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
		return &provider.Response{Text: "finished after shutdown began"}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Graceful shutdown: a request in flight when the server is told to stop
// (the listener is closed) still gets its answer, and ServeHTTP returns.
func TestHTTPShutdownLetsRequestsInFlightFinish(t *testing.T) {
	cfg, err := config.Parse([]byte(fmt.Sprintf(spawnConfig, "")), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(t, "sp.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gp := &gateProvider{entered: make(chan struct{}), release: make(chan struct{})}
	srv, err := Build(cfg, st, &BuildOptions{Version: "test", Providers: map[string]provider.Provider{"script": gp}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	auth, _, err := httpauth.FromConfig(cfg, &httpauth.Options{Getenv: func(string) string { return "shutdown-token" }})
	if err != nil {
		t.Fatal(err)
	}
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	addr := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- srv.ServeHTTP(hctx, "127.0.0.1:0", HTTPOptions{Auth: auth}, func(a net.Addr) { addr <- a.String() })
	}()
	a := <-addr
	c, err := client.NewStreamableHttpClient("http://"+a+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer shutdown-token"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	init.Params.ClientInfo = mcp.Implementation{Name: "shutdown", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	type result struct {
		res *mcp.CallToolResult
		err error
	}
	got := make(chan result, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "spawn_agent"
		req.Params.Arguments = map[string]any{"task": "wait for the gate"}
		res, err := c.CallTool(ctx, req)
		got <- result{res, err}
	}()
	<-gp.entered // the call is in flight, inside the model call
	stop()
	waitFor(t, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", a)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	close(gp.release)
	r := <-got
	if r.err != nil || r.res.IsError || !strings.Contains(text(r.res), "finished after shutdown began") {
		t.Fatalf("the request in flight at shutdown: %v %+v", r.err, r.res)
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
}

// A client listening on its GET stream is not idle: its session outlives
// session_idle_minutes while the stream is open.
func TestHTTPListeningSessionIsNotIdle(t *testing.T) {
	e := newHTTPEnv(t, twoTokenConfig, twoTokens, HTTPOptions{})
	a := e.client(twoTokens["ALICE"], nil) // listens on a GET stream
	listening := func() bool {
		e.h.sessions.mu.Lock()
		defer e.h.sessions.mu.Unlock()
		for _, s := range e.h.sessions.byID {
			if len(s.streams) > 0 {
				return true
			}
		}
		return false
	}
	waitFor(t, "the client's GET stream", listening)
	e.advance(2 * time.Hour)
	e.h.Sweep()
	if n := e.h.Sessions(); n != 1 {
		t.Fatalf("%d sessions after the sweep, want the listening one", n)
	}
	if res := a.call("sessions_list", map[string]any{}, nil); res.IsError {
		t.Fatalf("the listening client's session: %s", text(res))
	}
}
