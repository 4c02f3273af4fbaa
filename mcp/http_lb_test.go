package mcp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// sharedClock is one clock for several instances (they read one
// database, so they must agree on what "idle for 30 minutes" means).
type sharedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *sharedClock) get() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *sharedClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newHTTPInstances serves toml over HTTP from n instances — each its own
// store handle, server and HTTP handler, as n processes would be — on one
// database from testdb.
func newHTTPInstances(t *testing.T, n int, toml string, env map[string]string, opts HTTPOptions) ([]*httpEnv, *sharedClock) {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	dsn := testdb.DSN(t, "sp.db")
	clock := &sharedClock{now: time.Unix(1_800_000_000, 0)}
	var out []*httpEnv
	for i := 0; i < n; i++ {
		ctx := context.Background()
		st, err := store.Open(ctx, dsn, nil)
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
		o := opts
		o.Auth, o.Now = auth, clock.get
		if o.IdleTimeout == 0 {
			o.IdleTimeout = time.Duration(cfg.MCP.HTTP.SessionIdleMinutes) * time.Minute
		}
		h, err := srv.NewHTTPHandler(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(h)
		e := &httpEnv{t: t, st: st, srv: srv, h: h, url: ts.URL + "/mcp"}
		t.Cleanup(func() {
			ts.CloseClientConnections()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = h.Shutdown(sctx)
			ts.Close()
			srv.Close()
			st.Close()
		})
		out = append(out, e)
	}
	return out, clock
}

// A session initialized on one instance is served by another for the same
// principal only; a DELETE on either ends it on both; the cap and idle
// expiry count every instance's sessions.
func TestHTTPSessionSharedAcrossInstances(t *testing.T) {
	in, clock := newHTTPInstances(t, 2, twoTokenConfig+"\n[mcp.http]\nmax_sessions = 3\n", twoTokens, HTTPOptions{MaxSessions: 3})
	a, b := in[0], in[1]
	alice, bob := twoTokens["ALICE"], twoTokens["BOB"]

	sid := a.initSession(alice)
	if code, _, body := b.raw(http.MethodPost, alice, sid, "", listBody); code != http.StatusOK || !strings.Contains(body, "sessions_list") {
		t.Fatalf("tools/list on instance B with a session from A: %d %s", code, body)
	}
	for name, e := range map[string]*httpEnv{"A": a, "B": b} {
		if code, _, body := e.raw(http.MethodPost, bob, sid, "", listBody); code != http.StatusNotFound {
			t.Errorf("another token's request with alice's session on %s: %d %s, want 404", name, code, body)
		}
		if code, _, body := e.raw(http.MethodDelete, bob, sid, "", ""); code != http.StatusNotFound {
			t.Errorf("another token's DELETE of alice's session on %s: %d %s, want 404", name, code, body)
		}
	}
	// A GET stream on A ends when the session is DELETEd on B (at A's
	// next sweep).
	streamEnded := make(chan error, 1)
	req, _ := http.NewRequest(http.MethodGet, a.url, nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream on A: %v %v", err, resp)
	}
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		streamEnded <- err
	}()
	waitFor(t, "A's GET stream", func() bool { return a.h.sessions.listening(sid) })
	if code, _, body := b.raw(http.MethodDelete, alice, sid, "", ""); code != http.StatusOK {
		t.Fatalf("DELETE on B: %d %s", code, body)
	}
	for name, e := range map[string]*httpEnv{"A": a, "B": b} {
		if code, _, body := e.raw(http.MethodPost, alice, sid, "", listBody); code != http.StatusNotFound {
			t.Errorf("the session DELETEd on B, used on %s: %d %s, want 404", name, code, body)
		}
	}
	waitStreamEnd := func(when string) {
		t.Helper()
		select {
		case <-streamEnded:
		case <-time.After(20 * time.Second):
			t.Fatalf("A's GET stream of a session DELETEd on B is still open %s", when)
		}
	}
	if testdb.Postgres() {
		// B's DELETE wakes A (LISTEN/NOTIFY): no sweep needed.
		waitStreamEnd("after the wake-up of B's DELETE")
	}
	a.h.Sweep()
	if n := a.h.LocalSessions(); n != 0 {
		t.Fatalf("A still holds %d sessions after one ended on B and a sweep", n)
	}
	if !testdb.Postgres() {
		waitStreamEnd("after A's sweep")
	}

	// The cap is one count over both instances.
	ids := []string{a.initSession(alice), b.initSession(alice), a.initSession(bob)}
	for name, e := range map[string]*httpEnv{"A": a, "B": b} {
		if code, _, body := e.raw(http.MethodPost, alice, "", "", initBody); code != http.StatusServiceUnavailable || !strings.Contains(body, "max_sessions") {
			t.Errorf("a 4th initialize on %s with 3 live over both: %d %s, want 503", name, code, body)
		}
		if n := e.h.Sessions(); n != 3 {
			t.Errorf("instance %s counts %d live sessions, want 3", name, n)
		}
	}
	if code, _, _ := a.raw(http.MethodDelete, alice, ids[1], "", ""); code != http.StatusOK { // issued by B, deleted on A
		t.Fatalf("DELETE on A of B's session: %d", code)
	}
	ids[1] = b.initSession(alice) // the slot is free for either

	// Idle expiry is judged from the shared last use.
	clock.advance(20 * time.Minute)
	if code, _, _ := b.raw(http.MethodPost, alice, ids[0], "", listBody); code != http.StatusOK {
		t.Fatalf("A's session used on B within the idle time: %d", code)
	}
	clock.advance(20 * time.Minute) // 20 minutes after the use on B, 40 after its creation on A
	if code, _, body := a.raw(http.MethodPost, alice, ids[0], "", listBody); code != http.StatusOK {
		t.Fatalf("a use on B renews the session for A: %d %s", code, body)
	}
	clock.advance(31 * time.Minute)
	if code, _, body := b.raw(http.MethodPost, alice, ids[0], "", listBody); code != http.StatusNotFound || !strings.Contains(body, "expired") {
		t.Fatalf("a session idle 31 minutes: %d %s, want 404 expired", code, body)
	}
	a.h.Sweep()
	b.h.Sweep()
	if n, m := a.h.Sessions(), a.h.LocalSessions()+b.h.LocalSessions(); n != 0 || m != 0 {
		t.Fatalf("after expiry and sweeps: %d live, %d held locally; want 0 and 0", n, m)
	}
}

// splitter sends initialize to one handler and every other request to
// another: the worst a load balancer may do to a session.
func splitter(t *testing.T, initTo, restTo string) string {
	t.Helper()
	send := func(target string, w http.ResponseWriter, r *http.Request, body []byte) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"method":"initialize"`)) {
			send(initTo, w, r, body)
			return
		}
		send(restTo, w, r, body)
	}))
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close() })
	return ts.URL + "/mcp"
}

// A client initialized on A and listening on B hears the announce of a
// run that ran on A (B's poll finds the durable row); with a second
// client of the same principal listening on A, the announce is notified
// exactly once between them. What initialize negotiated on A (the
// client's capabilities) is what B sees.
func TestHTTPNoticeReachesTheInstanceThatListens(t *testing.T) {
	in, _ := newHTTPInstances(t, 2, fmt.Sprintf(spawnConfig, "")+twoTokenConfig, twoTokens, HTTPOptions{})
	a, b := in[0], in[1]
	alice := twoTokens["ALICE"]

	var mu sync.Mutex
	heard := map[string][]string{}
	listen := func(name, url string) *client.Client {
		c, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + alice}), transport.WithContinuousListening())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.OnNotification(func(n mcp.JSONRPCNotification) {
			mu.Lock()
			heard[name] = append(heard[name], fmt.Sprint(n.Params.AdditionalFields))
			mu.Unlock()
		})
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		init := mcp.InitializeRequest{}
		init.Params.ProtocolVersion = "2025-11-25"
		init.Params.ClientInfo = mcp.Implementation{Name: name, Version: "1"}
		if _, err := c.Initialize(context.Background(), init); err != nil {
			t.Fatalf("initialize %s: %v", name, err)
		}
		return c
	}
	onB := listen("onB", splitter(t, a.url, b.url)) // initialize on A, GET stream and calls on B
	waitFor(t, "the GET stream on B", func() bool { return b.h.sessions.listening(onB.GetSessionId()) })
	if a.h.sessions.listening(onB.GetSessionId()) {
		t.Fatal("A claims to hold the GET stream of a client listening on B")
	}

	// A run on A, requested by alice through a session A never streams to.
	sid := a.initSession(alice)
	code, _, body := a.raw(http.MethodPost, alice, sid, "", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sessions_spawn","arguments":{"task":"quick job","label":"from A"}}}`)
	if code != http.StatusOK || !strings.Contains(body, "runId") {
		t.Fatalf("sessions_spawn on A: %d %s", code, body)
	}
	runID := between(body, `"runId":"`, `"`)
	waitFor(t, "the announce on B's stream", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(strings.Join(heard["onB"], "\n"), runID)
	})

	// A second client of alice listens on A: each announce now goes to
	// one instance's listeners, never both.
	onA := listen("onA", a.url)
	waitFor(t, "the GET stream on A", func() bool { return a.h.sessions.listening(onA.GetSessionId()) })
	code, _, body = b.raw(http.MethodPost, alice, sid, "", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"sessions_spawn","arguments":{"task":"quick second","label":"from B"}}}`)
	if code != http.StatusOK || !strings.Contains(body, "runId") {
		t.Fatalf("sessions_spawn on B: %d %s", code, body)
	}
	second := between(body, `"runId":"`, `"`)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, note := range append(append([]string{}, heard["onA"]...), heard["onB"]...) {
			if strings.Contains(note, second) && strings.Contains(note, "sessionplane.announce") {
				n++
			}
		}
		return n
	}
	waitFor(t, "the second announce", func() bool { return count() > 0 })
	// Both instances poll every 2 s: wait for a poll of each after the
	// claim, then the count must still be one.
	var notified int64
	if err := a.st.QueryRow(context.Background(), `SELECT notified_at FROM announces WHERE run_id = ?`, second).Scan(&notified); err != nil || notified == 0 {
		t.Fatalf("the announce row is not marked notified: %v", err)
	}
	for _, e := range []*httpEnv{a, b} {
		waitPolls(t, e, 2)
	}
	if n := count(); n != 1 {
		t.Fatalf("the announce was notified %d times over both instances' listeners, want 1", n)
	}

	// The session B registered for onB's GET stream has the client
	// capabilities onB declared at initialize on A (the mcp-go client
	// declares none but its name and version).
	ob, _ := b.srv.owns("agent:main:main")
	registered := false
	for _, c := range ob.connList() {
		if c.sess.SessionID() == onB.GetSessionId() {
			registered = true
			if ci, ok := c.sess.(server.SessionWithClientInfo); !ok || ci.GetClientInfo().Name != "onB" {
				t.Fatalf("B's session for onB's GET stream does not know its client: %+v", c.sess)
			}
		}
	}
	if !registered {
		t.Fatal("B did not register onB's GET stream as a connection of alice")
	}

	// What initialize negotiated on A is what B uses.
	caps := b.initSessionWith(a, alice, `{"elicitation":{}}`)
	if code, _, body := b.raw(http.MethodPost, alice, caps, "", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"session_status","arguments":{}}}`); code != http.StatusOK {
		t.Fatalf("session_status on B: %d %s", code, body)
	}
	o, _ := b.srv.owns("agent:main:main")
	found := false
	for _, c := range o.connList() {
		if c.sess.SessionID() == caps {
			found = true
			if !canElicit(c.sess) {
				t.Fatal("B does not see the elicitation capability the client declared at initialize on A")
			}
		}
	}
	if !found {
		t.Fatal("B did not remember the connection that called it")
	}
}

// initSessionWith initializes on instance on with the given client
// capabilities and returns the session id.
func (e *httpEnv) initSessionWith(on *httpEnv, token, capabilities string) string {
	e.t.Helper()
	body := strings.Replace(initBody, `"capabilities":{}`, `"capabilities":`+capabilities, 1)
	code, h, resp := on.raw(http.MethodPost, token, "", "", body)
	if code != http.StatusOK || h.Get("Mcp-Session-Id") == "" {
		e.t.Fatalf("initialize: %d %s", code, resp)
	}
	return h.Get("Mcp-Session-Id")
}

// waitPolls waits until e's notifier has made n more passes (the
// heartbeat wakes it every 2 s for announces written elsewhere): at least
// n-1 of them began after the call.
func waitPolls(t *testing.T, e *httpEnv, n int) {
	t.Helper()
	start := e.srv.notifyPasses.Load()
	waitFor(t, "notifier passes", func() bool { return e.srv.notifyPasses.Load() >= start+int64(n) })
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

// BenchmarkHTTPSessionRequest: one tools/list on a live session through
// the HTTP handler (session row read from the store on each request), and
// the session check alone.
func BenchmarkHTTPSessionRequest(b *testing.B) {
	b.Run("tools_list", func(b *testing.B) {
		e := newBenchHTTP(b)
		sid := e.benchInit(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			req := httptest.NewRequest(http.MethodPost, "http://localhost/mcp", strings.NewReader(listBody))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer "+twoTokens["ALICE"])
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
			w := httptest.NewRecorder()
			e.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body.String())
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		e := newBenchHTTP(b)
		sid := e.benchInit(b)
		p := httpauth.Principal{Name: "alice", AgentID: "main", SessionKey: "agent:main:main"}
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := e.sessions.check(ctx, sid, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func newBenchHTTP(b *testing.B) *HTTPHandler {
	b.Helper()
	cfg, err := config.Parse([]byte(twoTokenConfig), "test.toml")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(b, "sp.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv, err := Build(cfg, st, &BuildOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	auth, _, err := httpauth.FromConfig(cfg, &httpauth.Options{Getenv: func(k string) string { return twoTokens[k] }})
	if err != nil {
		b.Fatal(err)
	}
	h, err := srv.NewHTTPHandler(HTTPOptions{Auth: auth}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Shutdown(context.Background()) })
	return h
}

func (h *HTTPHandler) benchInit(b *testing.B) string {
	b.Helper()
	req := httptest.NewRequest(http.MethodPost, "http://localhost/mcp", strings.NewReader(initBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+twoTokens["ALICE"])
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("initialize: %d %s", w.Code, w.Body.String())
	}
	return w.Header().Get("Mcp-Session-Id")
}

// When the database cannot be read, a request on a session gets 503 with
// Retry-After (not 404: the session may well be alive), and the database
// error stays in the server's log.
func TestHTTPSessionTableDownGets503(t *testing.T) {
	in, _ := newHTTPInstances(t, 1, twoTokenConfig, twoTokens, HTTPOptions{})
	e := in[0]
	sid := e.initSession(twoTokens["ALICE"])
	e.st.DB().Close() // every statement now fails ("sql: database is closed")
	code, h, body := e.raw(http.MethodPost, twoTokens["ALICE"], sid, "", listBody)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || strings.Contains(body, "closed") {
		t.Fatalf("a session request with the database closed: %d %q %s; want 503 with Retry-After and no database error", code, h.Get("Retry-After"), body)
	}
	if code, _, _ := e.raw(http.MethodPost, twoTokens["ALICE"], "", "", initBody); code != http.StatusServiceUnavailable {
		t.Fatalf("initialize with the database closed: %d, want 503", code)
	}
}
