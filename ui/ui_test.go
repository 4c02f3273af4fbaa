package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

const testToken = "test-token-0123456789abcdef"

// hiddenMark is in every name and text of the sessions the restricted
// viewer may not read: no response it gets may contain it.
const hiddenMark = "zqhidden"

const testConfig = `
[agents.presets.observer]
tools.allow = ["sessions_list", "sessions_history", "sessions_search", "session_status"]
sessions.key_prefix = "agent:main:"

[agents.presets.nosearch]
tools.allow = ["sessions_list", "sessions_history"]
`

type fixture struct {
	st   *store.Store
	path string
	cfg  *config.Config
	gate *policy.Engine
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	path := testdb.DSN(t, "ui.db")
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg, err := config.Parse([]byte(testConfig), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	gate, err := policy.New(cfg, st, tools.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, path: path, cfg: cfg, gate: gate}
}

// seed writes two trees: agent:main:main → research child (ok) →
// grandchild (running), and agent:zqhidden:main → a child, both with
// messages that contain "zebra".
func seed(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	spawn := func(requester, child, label, task string) string {
		t.Helper()
		id := fmt.Sprintf("run-%s", label)
		err := st.CreateRun(ctx, &store.Session{Key: child, ParentKey: requester, Label: label, SpawnedBy: requester, Depth: strings.Count(child, ":subagent:"), Model: "demo/scripted"},
			[]store.Message{{SessionKey: child, Role: store.RoleUser, Trust: store.TrustInterSession, Content: store.Content{Text: task}}},
			&store.Run{ID: id, Kind: "spawn", ChildKey: child, RequesterKey: requester, AgentID: store.AgentOf(child), Label: label, Task: task, Model: "demo/scripted"})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := st.ClaimRun(ctx, id, "inst", 1); err != nil || !ok {
			t.Fatalf("claim %s: %v %v", id, ok, err)
		}
		return id
	}
	for _, k := range []string{"agent:main:main", "agent:" + hiddenMark + ":main"} {
		if _, err := st.EnsureSession(ctx, store.Session{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	st.AppendMessage(ctx, store.Message{SessionKey: "agent:main:main", Role: store.RoleUser, Trust: store.TrustUser, Content: store.Content{Text: "look for the zebra papers"}})
	// A visible transcript that names a hidden session (say, a cross-agent
	// spawn's announce): the key must not reach a viewer who may not read it.
	st.AppendMessage(ctx, store.Message{SessionKey: "agent:main:main", Role: store.RoleUser, Trust: store.TrustInterSession,
		Content: store.Content{Text: "the zebra plan is in agent:" + hiddenMark + ":subagent:h1, see session://agent:" + hiddenMark + ":subagent:h1."}})
	child := "agent:main:subagent:c1"
	id := spawn("agent:main:main", child, "research", "find zebra papers")
	st.AppendMessages(ctx, []store.Message{
		{SessionKey: child, Role: store.RoleAssistant, Trust: store.TrustModel, TokensIn: 100, TokensOut: 20, CostUSD: 0.01,
			Content: store.Content{ToolCalls: []store.ToolCall{{ID: "c1", Name: "web_fetch", Args: json.RawMessage(`{"url":"https://example.org"}`)}}}},
		{SessionKey: child, Role: store.RoleTool, Trust: store.TrustExternal, Content: store.Content{ToolResults: []store.ToolResult{{CallID: "c1", Name: "web_fetch", Content: "<script>alert(1)</script> zebra stripes"}}}},
	})
	grand := child + ":subagent:g1"
	spawn(child, grand, "summarise", "summarise the zebra findings")
	if ok, err := st.FinishRun(ctx, id, store.Outcome{State: store.RunOK, ResultText: "three zebra papers", TokensIn: 100, TokensOut: 20, CostUSD: 0.01, SessionStatus: "done",
		Messages: []store.Message{{SessionKey: child, Role: store.RoleAssistant, Trust: store.TrustModel, Content: store.Content{Text: "three zebra papers"}}}},
		&store.Announce{RequesterKey: "agent:main:main", Status: "ok", Body: "[announce] sub-agent \"research\" (run " + id + ") finished: ok\nStats: runtime 1s • sessionKey " + child + " • transcript session://" + child}); err != nil || !ok {
		t.Fatalf("finish: %v %v", ok, err)
	}
	hid := "agent:" + hiddenMark + ":subagent:h1"
	hidRun := spawn("agent:"+hiddenMark+":main", hid, hiddenMark+"-label", "the "+hiddenMark+" zebra plan")
	st.AddUsage(ctx, hid, 5000, 5000, 9.99)
	if ok, err := st.FinishRun(ctx, hidRun, store.Outcome{State: store.RunError, CostUSD: 9.99, TokensIn: 5000, TokensOut: 5000}, nil); err != nil || !ok {
		t.Fatalf("finish hidden: %v %v", ok, err)
	}
}

// server starts the dashboard for caller behind httptest.
func (f *fixture) server(t *testing.T, caller policy.Caller) (*httptest.Server, *UI) {
	t.Helper()
	auth, err := NewTokenAuth(testToken, caller)
	if err != nil {
		t.Fatal(err)
	}
	u, err := New(Options{Store: f.st, Config: f.cfg, Policy: f.gate, Auth: auth, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(u)
	t.Cleanup(func() { u.Close(); srv.Close() })
	return srv, u
}

func (f *fixture) caller(t *testing.T, preset string) policy.Caller {
	t.Helper()
	c, err := CallerFor(f.gate, "main", preset)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAuthTokenCookieAndRedirect(t *testing.T) {
	f := newFixture(t)
	srv, _ := f.server(t, f.caller(t, ""))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, path := range []string{"/", "/api/me", "/events?view=tree", "/?token=wrong-token-0123456789"} {
		res, err := noRedirect.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s without a valid token: %d %q, want 401 with WWW-Authenticate: Bearer", path, res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	}
	res, err := noRedirect.Get(srv.URL + "/?token=" + testToken + "&x=1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("?token=: status %d, want 303", res.StatusCode)
	}
	if loc := res.Header.Get("Location"); strings.Contains(loc, "token") || loc != "/?x=1" {
		t.Errorf("redirect to %q, want /?x=1 (the token dropped from the address)", loc)
	}
	cookies := res.Cookies()
	if len(cookies) != 1 || !strings.HasPrefix(cookies[0].Name, CookiePrefix) || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Value == testToken {
		t.Fatalf("cookie %+v: want one HttpOnly, SameSite=Strict session cookie that is not the token", cookies)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/me", nil)
	req.AddCookie(cookies[0])
	res, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me Me
	json.NewDecoder(res.Body).Decode(&me)
	res.Body.Close()
	if res.StatusCode != 200 || me.Key != "agent:main:main" {
		t.Errorf("api/me with the cookie: %d %+v", res.StatusCode, me)
	}
	if code, _ := get(t, srv, "/api/me"); code != 200 {
		t.Errorf("api/me with the bearer token: %d", code)
	}
	res, err = http.Post(srv.URL+"/api/me", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405 (read-only)", res.StatusCode)
	}
	if _, err := NewTokenAuth("short", policy.Caller{}); err == nil {
		t.Error("a 5-character token was accepted")
	}
}

func TestAssetsAreEmbeddedAndLocal(t *testing.T) {
	f := newFixture(t)
	srv, _ := f.server(t, f.caller(t, ""))
	for _, p := range []string{"/", "/app.js", "/style.css", "/favicon.svg"} {
		code, body := get(t, srv, p)
		if code != 200 || len(body) < 100 {
			t.Errorf("GET %s: %d, %d bytes", p, code, len(body))
		}
		body = strings.ReplaceAll(body, "http://www.w3.org/2000/svg", "") // a namespace name, not a load
		for _, ext := range []string{"http://", "https://", "//fonts.", "cdn"} {
			if strings.Contains(body, ext) {
				t.Errorf("%s references %q: the dashboard must work offline", p, ext)
			}
		}
	}
}

// A viewer bound by a key_prefix sees nothing of another agent's sessions:
// not in the list, the tree, a transcript, the stats or the search — not
// even a count.
func TestRestrictedViewerSeesNoHiddenSession(t *testing.T) {
	f := newFixture(t)
	seed(t, f.st)
	srv, _ := f.server(t, f.caller(t, "observer"))
	paths := []string{"/api/me", "/api/sessions", "/api/sessions?archived=1", "/api/tree", "/api/stats", "/api/search?q=zebra",
		"/api/session?key=agent:main:main", "/api/session?key=agent:main:subagent:c1"}
	for _, p := range paths {
		code, body := get(t, srv, p)
		if code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
		if strings.Contains(body, hiddenMark) {
			t.Errorf("GET %s reveals the hidden session: %s", p, body)
		}
	}
	_, body := get(t, srv, "/api/search?q=zebra")
	var sv SearchView
	json.Unmarshal([]byte(body), &sv)
	if len(sv.Hits) < 3 {
		t.Errorf("search zebra: %d hits, want the visible ones (main, child, grandchild): %s", len(sv.Hits), body)
	}
	// A hidden session and a missing one get the same answer.
	c1, hidden := get(t, srv, "/api/session?key=agent:"+hiddenMark+":subagent:h1")
	c2, missing := get(t, srv, "/api/session?key=agent:main:nosuch")
	if c1 != 404 || c1 != c2 || hidden != missing {
		t.Errorf("hidden session: %d %s; missing session: %d %s (want the same 404)", c1, hidden, c2, missing)
	}
	_, body = get(t, srv, "/api/stats")
	var stats StatsView
	json.Unmarshal([]byte(body), &stats)
	if stats.Total.CostUSD > 1 || stats.RunsByState["error"] != 0 || stats.RunsByState["ok"] != 1 || stats.RunsByState["running"] != 1 {
		t.Errorf("stats count hidden runs or cost: %s", body)
	}
	_, body = get(t, srv, "/api/tree")
	var tree TreeView
	json.Unmarshal([]byte(body), &tree)
	if len(tree.Roots) != 1 || tree.Roots[0].Key != "agent:main:main" || len(tree.Roots[0].Children) != 1 ||
		len(tree.Roots[0].Children[0].Children) != 1 || tree.Roots[0].Children[0].Children[0].Run.State != "running" {
		t.Errorf("tree: %s", body)
	}

	// The same database, viewed without a preset: everything is there.
	all, _ := f.server(t, f.caller(t, ""))
	for _, p := range []string{"/api/sessions", "/api/tree", "/api/search?q=zebra", "/api/session?key=agent:main:main"} {
		if _, body := get(t, all, p); !strings.Contains(body, hiddenMark) {
			t.Errorf("unrestricted GET %s does not show the other agent's session: %s", p, body)
		}
	}
}

func TestTranscriptShowsToolsAnnouncesAndTrust(t *testing.T) {
	f := newFixture(t)
	seed(t, f.st)
	srv, _ := f.server(t, f.caller(t, ""))
	_, body := get(t, srv, "/api/session?key=agent:main:subagent:c1")
	var v TranscriptView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Messages) != 4 || !v.Reset || v.Messages[0].Seq != 1 {
		t.Fatalf("messages: %s", body)
	}
	for i, m := range v.Messages {
		if m.Seq != int64(i+1) {
			t.Errorf("message %d has seq %d: not in seq order", i, m.Seq)
		}
	}
	if tc := v.Messages[1].ToolCalls; len(tc) != 1 || tc[0].Name != "web_fetch" {
		t.Errorf("tool call: %+v", v.Messages[1])
	}
	if tr := v.Messages[2].ToolResults; len(tr) != 1 || v.Messages[2].Trust != store.TrustExternal {
		t.Errorf("tool result: %+v", v.Messages[2])
	}
	if strings.Contains(body, "<script>") {
		t.Error("the JSON carries a raw <script> tag (want it escaped)")
	}
	if len(v.Children) != 1 || v.Children[0].ChildKey != "agent:main:subagent:c1:subagent:g1" || len(v.Runs) != 1 || v.Runs[0].State != "ok" {
		t.Errorf("runs %+v children %+v", v.Runs, v.Children)
	}
	_, body = get(t, srv, "/api/session?key=agent:main:main")
	json.Unmarshal([]byte(body), &v)
	last := v.Messages[len(v.Messages)-1]
	if !last.Announce || last.ChildKey != "agent:main:subagent:c1" {
		t.Errorf("announce: %+v", last)
	}
	if code, body := get(t, srv, "/api/session?key=agent:main:main&after=1"); code != 200 || strings.Contains(body, `"seq":1,`) {
		t.Errorf("after=1: %d %s", code, body)
	}
}

func TestSearchIsTheToolAndItsGate(t *testing.T) {
	f := newFixture(t)
	seed(t, f.st)
	srv, _ := f.server(t, f.caller(t, "nosearch"))
	code, body := get(t, srv, "/api/search?q=zebra")
	if code != http.StatusForbidden || !strings.Contains(body, "tools.allow") {
		t.Errorf("search with a preset that does not allow sessions_search: %d %s (want 403 naming tools.allow)", code, body)
	}
	if code, body := get(t, srv, "/api/sessions"); code != 200 {
		t.Errorf("sessions under nosearch: %d %s", code, body)
	}
}

// sse reads Server-Sent Events of one stream.
type sse struct {
	t   *testing.T
	r   *bufio.Reader
	res *http.Response
}

func openSSE(t *testing.T, srv *httptest.Server, q url.Values) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { cancel(); res.Body.Close() })
	return &sse{t: t, r: bufio.NewReader(res.Body), res: res}
}

// next returns the next event's name and data, failing after 10 s.
func (s *sse) next() (string, string) {
	s.t.Helper()
	type ev struct{ name, data string }
	got := make(chan ev, 1)
	go func() {
		var e ev
		for {
			line, err := s.r.ReadString('\n')
			if err != nil {
				got <- ev{"EOF", err.Error()}
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "" && e.name != "":
				got <- e
				return
			case strings.HasPrefix(line, "event: "):
				e.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				e.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	select {
	case e := <-got:
		return e.name, e.data
	case <-time.After(10 * time.Second):
		s.res.Body.Close() // ends the reader goroutine
		s.t.Fatal("no event within 10s")
		return "", ""
	}
}

// The tree follows the database as another process writes it: a second
// store handle (its own connections, as another process would have)
// finishes a run, and the stream sends the new state. A change in a
// session the viewer may not read sends nothing.
func TestEventsFollowOtherWriters(t *testing.T) {
	f := newFixture(t)
	seed(t, f.st)
	srv, _ := f.server(t, f.caller(t, "observer"))
	other, err := store.Open(context.Background(), f.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	tree := openSSE(t, srv, url.Values{"view": {"tree"}})
	name, first := tree.next()
	if name != "view" || !strings.Contains(first, `"state":"running"`) {
		t.Fatalf("first event %s: %s", name, first)
	}
	// A hidden session changes: nothing is sent. Then a visible run ends:
	// the next event is that change (an event for the hidden one would
	// have been identical to the first and come before it).
	if _, err := other.AppendMessage(context.Background(), store.Message{SessionKey: "agent:" + hiddenMark + ":main", Role: store.RoleUser, Trust: store.TrustUser, Content: store.Content{Text: "psst"}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := other.FinishRun(context.Background(), "run-summarise", store.Outcome{State: store.RunTimeout, SessionStatus: "timeout"}, nil); err != nil || !ok {
		t.Fatalf("finish: %v %v", ok, err)
	}
	name, second := tree.next()
	if name != "view" || strings.Contains(second, `"state":"running"`) || !strings.Contains(second, `"state":"timeout"`) {
		t.Fatalf("second event %s: %s", name, second)
	}
	if strings.Contains(second, hiddenMark) {
		t.Fatal("the event names the hidden session")
	}

	// A transcript stream sends only what follows what it sent.
	tr := openSSE(t, srv, url.Values{"view": {"session"}, "key": {"agent:main:main"}})
	_, data := tr.next()
	var v TranscriptView
	json.Unmarshal([]byte(data), &v)
	if !v.Reset || len(v.Messages) != 3 {
		t.Fatalf("first transcript event: %s", data)
	}
	if want := "the zebra plan is in " + HiddenKey + ", see session://" + HiddenKey + "."; v.Messages[1].Text != want {
		t.Errorf("a hidden key in a visible message: %q, want %q", v.Messages[1].Text, want)
	}
	other.AppendMessage(context.Background(), store.Message{SessionKey: "agent:main:main", Role: store.RoleUser, Trust: store.TrustUser, Content: store.Content{Text: "and the lions?"}})
	_, data = tr.next()
	v = TranscriptView{}
	json.Unmarshal([]byte(data), &v)
	if v.Reset || len(v.Messages) != 1 || v.Messages[0].Text != "and the lions?" || v.Messages[0].Seq != 4 {
		t.Fatalf("second transcript event: %s", data)
	}

	// A stream of a session the viewer may not read fails without naming it.
	hid := openSSE(t, srv, url.Values{"view": {"session"}, "key": {"agent:" + hiddenMark + ":main"}})
	name, data = hid.next()
	if name != "failure" || strings.Contains(data, hiddenMark) {
		t.Fatalf("hidden transcript stream: %s %s", name, data)
	}
}

// Close ends open streams, so a server shutdown does not wait on them.
func TestCloseEndsStreams(t *testing.T) {
	f := newFixture(t)
	srv, u := f.server(t, f.caller(t, ""))
	s := openSSE(t, srv, url.Values{"view": {"stats"}})
	if name, _ := s.next(); name != "view" {
		t.Fatalf("first event: %s", name)
	}
	u.Close()
	if name, _ := s.next(); name != "EOF" {
		t.Fatalf("after Close: %s, want the stream to end", name)
	}
}

// Mounted under a prefix beside other handlers (the way --http serves it
// at /ui/), the sign-in redirect, the cookie and the assets stay under it.
func TestMountedUnderPrefix(t *testing.T) {
	f := newFixture(t)
	auth, _ := NewTokenAuth(testToken, f.caller(t, ""))
	u, err := New(Options{Store: f.st, Config: f.cfg, Policy: f.gate, Auth: auth, Prefix: "/ui/"})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	mux := http.NewServeMux()
	mux.Handle("/ui/", u)
	mux.Handle("/ui", u)
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("mcp")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui: %d → %q, want 301 → /ui/", res.StatusCode, res.Header.Get("Location"))
	}
	res, err = noRedirect.Get(srv.URL + "/ui/?token=" + testToken)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	cookies := res.Cookies()
	if res.Header.Get("Location") != "/ui/" || len(cookies) != 1 || cookies[0].Path != "/ui/" {
		t.Fatalf("sign-in under /ui/: → %q, cookies %+v", res.Header.Get("Location"), cookies)
	}
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/api/tree"} {
		req, _ := http.NewRequest("GET", srv.URL+p, nil)
		req.AddCookie(cookies[0])
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("GET %s with the cookie: %d", p, res.StatusCode)
		}
	}
	if _, err := New(Options{Store: f.st, Config: f.cfg, Policy: f.gate, Auth: auth, Prefix: "/ui"}); err == nil {
		t.Error(`Prefix "/ui" (no trailing slash) was accepted`)
	}
}

// A view read while another process committed is read again, so a stream
// never shows a state no transaction left (a session timed out beside its
// run still running); a view read with nothing committed meanwhile is read
// once.
func TestViewReadAgainWhenACommitLandedMeanwhile(t *testing.T) {
	f := newFixture(t)
	seed(t, f.st)
	_, u := f.server(t, f.caller(t, "observer"))
	other, err := store.Open(context.Background(), f.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	calls := 0
	v, err := u.consistent(ctx, func(ctx context.Context) (any, error) {
		calls++
		if calls == 1 { // another process commits while this read is under way
			if ok, err := other.FinishRun(ctx, "run-summarise", store.Outcome{State: store.RunTimeout, SessionStatus: "timeout"}, nil); err != nil || !ok {
				t.Fatalf("finish: %v %v", ok, err)
			}
		}
		return calls, nil
	})
	if err != nil || v != 2 || calls != 2 {
		t.Fatalf("a read straddling a commit: view %v after %d reads (%v), want the second read", v, calls, err)
	}
	calls = 0
	if v, err := u.consistent(ctx, func(context.Context) (any, error) { calls++; return calls, nil }); err != nil || v != 1 {
		t.Fatalf("a read with no commit meanwhile: view %v after %d reads (%v), want one read", v, calls, err)
	}
}
