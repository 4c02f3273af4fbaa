package provider

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden request files under testdata/providers")

// testdataDir holds the recorded exchanges, shared with the rest of the repo.
const testdataDir = "../../testdata/providers"

// sent is one request the fake API received.
type sent struct {
	Method string
	Path   string
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// fakeAPI is an httptest server on 127.0.0.1 that plays one step per
// request (the last step repeats) and records what it was sent.
type fakeAPI struct {
	t     *testing.T
	srv   *httptest.Server
	steps []http.HandlerFunc

	mu   sync.Mutex
	reqs []sent
}

func newFakeAPI(t *testing.T, steps ...http.HandlerFunc) *fakeAPI {
	t.Helper()
	f := &fakeAPI{t: t, steps: steps}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	raw := make([]byte, 0, 1024)
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		raw = append(raw, buf[:n]...)
		if err != nil {
			break
		}
	}
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	f.mu.Lock()
	i := len(f.reqs)
	f.reqs = append(f.reqs, sent{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Raw: raw, Body: body})
	f.mu.Unlock()
	if i >= len(f.steps) {
		i = len(f.steps) - 1
	}
	f.steps[i](w, r)
}

// requests returns what the server received so far.
func (f *fakeAPI) requests() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.reqs...)
}

// last returns the last request received; it fails the test if none came.
func (f *fakeAPI) last() sent {
	f.t.Helper()
	reqs := f.requests()
	if len(reqs) == 0 {
		f.t.Fatal("the fake API received no request")
	}
	return reqs[len(reqs)-1]
}

// readRecorded returns a recorded response body from testdata/providers.
func readRecorded(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replay answers with a recorded body and optional header pairs.
func replay(t *testing.T, status int, file string, headers ...string) http.HandlerFunc {
	body := readRecorded(t, file)
	return respond(status, string(body), headers...)
}

// respond answers with a literal body.
func respond(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// resetConn hijacks the connection and closes it without a response.
func resetConn(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		_ = conn.Close()
	}
}

// cutBody promises the whole recorded body in Content-Length, sends half
// and closes the connection.
func cutBody(t *testing.T, file string) http.HandlerFunc {
	body := readRecorded(t, file)
	return func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		writeRaw(rw, len(body), body[:len(body)/2])
	}
}

func writeRaw(rw *bufio.ReadWriter, contentLength int, body []byte) {
	fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", contentLength)
	_, _ = rw.Write(body)
	_ = rw.Flush()
}

// blockUntilGone holds the request until the client goes away and reports
// that on gone.
func blockUntilGone(arrived, gone chan<- struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
		close(gone)
	}
}

// sleepRecorder replaces the backoff timer: it records each wait and
// returns at once (or ctx.Err()).
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) recorded() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// newHTTPProvider builds a provider of kind against the fake API.
func newHTTPProvider(t *testing.T, kind string, f *fakeAPI, cfg Config, sl *sleepRecorder) Provider {
	t.Helper()
	cfg.Kind = kind
	if cfg.BaseURL == "" {
		cfg.BaseURL = f.srv.URL
		if kind != KindAnthropic {
			cfg.BaseURL += "/v1"
		}
	}
	if cfg.APIKey == "" && kind != KindOpenAICompatible {
		cfg.APIKey = "sk-test"
	}
	if sl == nil {
		sl = &sleepRecorder{}
	}
	p, err := New("test-"+kind, cfg, &Options{HTTPClient: f.srv.Client(), Sleep: sl.sleep})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// weatherTool is the tool every recorded exchange uses.
var weatherTool = ToolSpec{
	Name:        "get_weather",
	Description: "Get the current weather for a city.",
	Schema:      json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}`),
}

// firstTurn is the opening request of the recorded weather exchange.
func firstTurn(model string) Request {
	return Request{
		Model:    model,
		System:   "You are a helpful assistant.",
		Messages: []Message{{Role: RoleUser, Text: "What's the weather in Paris?"}},
		Tools:    []ToolSpec{weatherTool},
	}
}

// secondTurn continues firstTurn with the model's tool call and its result.
func secondTurn(model, callID string) Request {
	req := firstTurn(model)
	req.Messages = append(req.Messages,
		Message{Role: RoleAssistant, Text: "I'll check the current weather in Paris for you.", ToolCalls: []ToolCall{
			{ID: callID, Name: "get_weather", Args: json.RawMessage(`{"city":"Paris","unit":"celsius"}`)},
		}},
		Message{Role: RoleTool, ToolResults: []ToolResult{
			{CallID: callID, Name: "get_weather", Content: "18°C, light rain"},
		}},
	)
	return req
}

// checkGolden compares a sent JSON body with a golden file, rewriting the
// file under -update.
func checkGolden(t *testing.T, name string, raw []byte) {
	t.Helper()
	path := filepath.Join(testdataDir, name)
	var got any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("sent body is not JSON: %v\n%s", err, raw)
	}
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want any
	if err := json.Unmarshal(readRecorded(t, name), &want); err != nil {
		t.Fatalf("golden %s: %v", name, err)
	}
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", "  ")
		t.Errorf("sent body differs from %s (run go test -update to accept):\n%s", name, gb)
	}
}

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %s", a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return reflect.DeepEqual(x, y)
}

// field walks a decoded JSON body: field(body, "tools", 0, "name").
func field(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

// asJSON renders v compactly for comparisons.
func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
