package mcp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/runtime/config"
)

// realHTTP serves fs's server through the handler ServeHTTP mounts at /mcp
// (Origin check, bearer authentication, session table, mcp-go) and returns
// its URL; requests must carry "Authorization: Bearer fuzz-token".
func realHTTP(tb testing.TB, fs *fuzzServer) string {
	tb.Helper()
	cfg, err := config.Parse([]byte(fuzzConfig), "fuzz.toml")
	if err != nil {
		tb.Fatal(err)
	}
	auth, _, err := httpauth.FromConfig(cfg, &httpauth.Options{Getenv: func(string) string { return "fuzz-token" }})
	if err != nil {
		tb.Fatal(err)
	}
	h, err := fs.srv.NewHTTPHandler(HTTPOptions{Auth: auth}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(h)
	tb.Cleanup(func() {
		ts.CloseClientConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		ts.Close()
	})
	return ts.URL + "/mcp"
}

// FuzzHTTPBody posts arbitrary bodies to the real Streamable HTTP handler
// (authenticated), with and without a session: no body may crash it, get a
// 5xx, or take it out of service — after each input a fresh initialize
// still succeeds.
func FuzzHTTPBody(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sessions_list","arguments":{"limit":9223372036854775807}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sessions_search","arguments":{"query":"` + strings.Repeat("deploy ", 300) + `"}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"task_list","arguments":{"action":"create","list":"l","title":"` + strings.Repeat("x", 4000) + `"}}}`,
		`[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		`{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
		`{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}`, `{"jsonrpc":"1.0"}`, `null`, `{}`, ``, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sessions_history","arguments":{"key":"agent:main:"}}}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	fs := newFuzzServer(f)
	url := realHTTP(f, fs)
	client := &http.Client{Timeout: fuzzCallBound + 20*time.Second}
	post := func(t *testing.T, body []byte, session string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer fuzz-token")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %.300q: %v", body, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(res.Body, 8<<20))
		return res, b
	}
	// end closes a session (the handler caps live sessions at 1000).
	end := func(t *testing.T, session string) {
		t.Helper()
		if session == "" {
			return
		}
		req, err := http.NewRequest(http.MethodDelete, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer fuzz-token")
		req.Header.Set("Mcp-Session-Id", session)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("DELETE session: %v", err)
		}
		res.Body.Close()
	}
	initBody := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}`)
	f.Fuzz(func(t *testing.T, body []byte, withSession bool) {
		session := ""
		if withSession {
			res, _ := post(t, initBody, "")
			session = res.Header.Get("Mcp-Session-Id")
			defer end(t, session)
		}
		res, out := post(t, body, session)
		defer end(t, res.Header.Get("Mcp-Session-Id")) // the body may have been an initialize
		if res.StatusCode >= 500 {
			t.Fatalf("status %d for %.300q: %.300s", res.StatusCode, body, out)
		}
		res, out = post(t, initBody, "")
		defer end(t, res.Header.Get("Mcp-Session-Id"))
		if res.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"serverInfo"`)) {
			t.Fatalf("after %.300q the server no longer initializes: %d %.300s", body, res.StatusCode, out)
		}
	})
}

// What was seen 6, over HTTP: a tools/call without the session that
// initialize opens is refused by the transport and never runs.
func TestHTTPCallBeforeInitializeRefused(t *testing.T) {
	fs := newFuzzServer(t)
	url := realHTTP(t, fs)
	body := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"task_list","arguments":{"action":"create","list":"l","title":"early"}}}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer fuzz-token")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode < 400 {
		t.Fatalf("tools/call without a session: status %d", res.StatusCode)
	}
	var n int
	if err := fs.st.DB().QueryRow(`SELECT count(*) FROM tasks`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the call ran: tasks = %d (%v)", n, err)
	}
}
