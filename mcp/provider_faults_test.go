package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// faultServer is a fake Chat Completions API on 127.0.0.1 that answers the
// n-th request (0-based) with step(n), and counts requests.
type faultServer struct {
	srv  *httptest.Server
	hits atomic.Int32
}

func newFaultServer(t *testing.T, step func(n int, w http.ResponseWriter, r *http.Request)) *faultServer {
	t.Helper()
	fs := &faultServer{}
	fs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n := int(fs.hits.Add(1)) - 1
		step(n, w, r)
	}))
	// Close the client side first (the providers' idle connections), so that
	// Close does not wait on a handler still blocked in a slow body.
	t.Cleanup(func() {
		fs.srv.CloseClientConnections()
		fs.srv.Close()
	})
	return fs
}

// recordedSleep replaces the providers' backoff timer: it records each wait
// and returns at once, so retries cost no wall time and the waits asked for
// can be asserted.
type recordedSleep struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *recordedSleep) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *recordedSleep) recorded() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// faultEnv is the real server on a temp database, built with bo, and an
// in-process client; everything is closed when the test ends.
type faultEnv struct {
	st  *store.Store
	srv *Server
	c   *client.Client
}

func startServer(t testing.TB, toml string, bo *BuildOptions) *faultEnv {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), filepath.Join(t.TempDir(), "test.toml"))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(t, "sp.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := Build(cfg, st, bo)
	if err != nil {
		t.Fatalf("build: %v", err)
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
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return &faultEnv{st: st, srv: srv, c: c}
}

// faultConfig is an openai-chat provider at base with the given per-attempt
// timeout and retries, the model every child runs.
func faultConfig(base string, timeoutSeconds, maxRetries int) string {
	return fmt.Sprintf(`
[providers.p]
kind = "openai-chat"
base_url = %q
api_key_env = "SESSIONPLANE_FAULT_KEY"
timeout_seconds = %d
max_retries = %d
[[models]]
id = "p/model"
provider = "p"
name = "the-model"
[agents.defaults]
model = "p/model"
`, base+"/v1", timeoutSeconds, maxRetries)
}

const chatFinal = `{"id":"c","object":"chat.completion","model":"the-model","choices":[{"index":0,"message":{"role":"assistant","content":"recovered answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3}}`

func writeJSON(w http.ResponseWriter, status int, body string, headers ...string) {
	for i := 0; i+1 < len(headers); i += 2 {
		w.Header().Set(headers[i], headers[i+1])
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// hijack takes the raw connection of a request.
func hijack(t *testing.T, w http.ResponseWriter) (io.Closer, *bufio.ReadWriter) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return io.NopCloser(nil), nil
	}
	return conn, rw
}

// Provider faults through the whole runtime: a child spawned with a
// blocking spawn_agent runs against a fake openai-chat API that misbehaves
// in one way per scenario. Each run ends in the documented state, its note
// names the provider, the model and the HTTP status or the timeout, it is
// announced with that note, and it ends within its bound: nothing hangs.
func TestProviderFaultsEndRunsInTheDocumentedState(t *testing.T) {
	t.Setenv("SESSIONPLANE_FAULT_KEY", "sk-test")
	half := chatFinal[:len(chatFinal)/2]
	cases := []struct {
		name           string
		timeoutSeconds int
		maxRetries     int
		step           func(t *testing.T, n int, w http.ResponseWriter, r *http.Request)
		wantState      string
		wantText       string
		wantNote       []string
		wantHits       int32
		wantWaits      []time.Duration // exact retry waits asked for (nil: not checked)
		bound          time.Duration
	}{
		{
			name: "429 with retry-after, then success", timeoutSeconds: 5, maxRetries: 2,
			step: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 0 {
					writeJSON(w, http.StatusTooManyRequests, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, "retry-after", "2")
					return
				}
				writeJSON(w, http.StatusOK, chatFinal)
			},
			wantState: store.RunOK, wantText: "recovered answer", wantHits: 2,
			wantWaits: []time.Duration{2 * time.Second}, bound: 15 * time.Second,
		},
		{
			name: "500 forever", timeoutSeconds: 5, maxRetries: 2,
			step: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusInternalServerError, `{"error":{"message":"The server had an error","type":"server_error"}}`)
			},
			wantState: store.RunError, wantHits: 3, bound: 15 * time.Second,
			wantNote: []string{"provider p (model the-model)", "HTTP 500", "server_error: The server had an error", "gave up after 3 attempts"},
		},
		{
			name: "slow body: headers, then a body that never finishes", timeoutSeconds: 1, maxRetries: -1,
			step: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", fmt.Sprint(len(chatFinal)))
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, half)
				http.NewResponseController(w).Flush()
				<-r.Context().Done() // held until the client gives up
			},
			wantState: store.RunError, wantHits: 1, bound: 10 * time.Second,
			wantNote: []string{"provider p (model the-model)", "response body not complete within 1s (timeout per attempt)"},
		},
		{
			name: "slow headers, retried once, then timeout", timeoutSeconds: 1, maxRetries: 1,
			step: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			wantState: store.RunError, wantHits: 2, bound: 10 * time.Second,
			wantNote: []string{"provider p (model the-model)", "no answer within 1s (timeout per attempt)", "gave up after 2 attempts"},
		},
		{
			name: "truncated JSON in a complete 200", timeoutSeconds: 5, maxRetries: 2,
			step: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, half)
			},
			wantState: store.RunError, wantHits: 1, bound: 10 * time.Second,
			wantNote: []string{"provider p (model the-model)", "truncated response body"},
		},
		{
			name: "body cut by the connection closing", timeoutSeconds: 5, maxRetries: 1,
			step: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				conn, rw := hijack(t, w)
				defer conn.Close()
				if rw != nil {
					fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(chatFinal), half)
					_ = rw.Flush()
				}
			},
			wantState: store.RunError, wantHits: 2, bound: 10 * time.Second,
			wantNote: []string{"provider p (model the-model)", "HTTP 200: read response body: truncated after", "gave up after 2 attempts"},
		},
		{
			name: "connection reset, always", timeoutSeconds: 5, maxRetries: 2,
			step: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				conn, _ := hijack(t, w)
				_ = conn.Close()
			},
			wantState: store.RunError, wantHits: 3, bound: 10 * time.Second,
			wantNote: []string{"provider p (model the-model)", "connection error", "gave up after 3 attempts"},
		},
		{
			name: "connection reset, then success", timeoutSeconds: 5, maxRetries: 2,
			step: func(t *testing.T, n int, w http.ResponseWriter, r *http.Request) {
				if n == 0 {
					conn, _ := hijack(t, w)
					_ = conn.Close()
					return
				}
				writeJSON(w, http.StatusOK, chatFinal)
			},
			wantState: store.RunOK, wantText: "recovered answer", wantHits: 2, bound: 10 * time.Second,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := newFaultServer(t, func(n int, w http.ResponseWriter, r *http.Request) { c.step(t, n, w, r) })
			sl := &recordedSleep{}
			env := startServer(t, faultConfig(fake.srv.URL, c.timeoutSeconds, c.maxRetries),
				&BuildOptions{Version: "test", Provider: &provider.Options{Sleep: sl.sleep}})

			ctx, cancel := context.WithTimeout(context.Background(), c.bound)
			defer cancel()
			start := time.Now()
			req := mcp.CallToolRequest{}
			req.Params.Name = "spawn_agent"
			req.Params.Arguments = map[string]any{"task": "answer the question"}
			res, err := env.c.CallTool(ctx, req)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("spawn_agent did not answer within %s: %v", c.bound, err)
			}
			var out struct {
				Status string `json:"status"`
				TaskID string `json:"task_id"`
				Text   string `json:"text"`
				Note   string `json:"note"`
			}
			b, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(b, &out); err != nil || out.TaskID == "" {
				t.Fatalf("spawn_agent result %s: %v", b, err)
			}
			run, err := env.st.GetRun(context.Background(), out.TaskID)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("state %s after %s, %d request(s), waits %v; note: %s", run.State, elapsed.Round(time.Millisecond), fake.hits.Load(), sl.recorded(), run.Note)
			if out.Status != c.wantState || run.State != c.wantState {
				t.Fatalf("status %q (run %q), want %q; note %q", out.Status, run.State, c.wantState, run.Note)
			}
			if c.wantText != "" && (out.Text != c.wantText || run.ResultText != c.wantText) {
				t.Errorf("text %q, want %q", out.Text, c.wantText)
			}
			for _, want := range c.wantNote {
				if !strings.Contains(run.Note, want) || !strings.Contains(out.Note, want) {
					t.Errorf("note %q does not say %q", run.Note, want)
				}
			}
			if c.wantState == store.RunOK && run.Note != "" {
				t.Errorf("a run that recovered has note %q", run.Note)
			}
			if got := fake.hits.Load(); got != c.wantHits {
				t.Errorf("the API got %d request(s), want %d", got, c.wantHits)
			}
			if c.wantWaits != nil && fmt.Sprint(sl.recorded()) != fmt.Sprint(c.wantWaits) {
				t.Errorf("retry waits %v, want %v (retry-after honoured)", sl.recorded(), c.wantWaits)
			}
			// The outcome is announced with the same note, in the same
			// transaction as the state.
			a, err := env.st.GetAnnounce(context.Background(), out.TaskID)
			if err != nil {
				t.Fatalf("no announce: %v", err)
			}
			if !strings.Contains(a.Body, "finished: "+c.wantState) || (c.wantState != store.RunOK && !strings.Contains(a.Body, c.wantNote[0])) {
				t.Errorf("announce %q", a.Body)
			}
			// The server still serves after the fault.
			list := mcp.CallToolRequest{}
			list.Params.Name = "sessions_list"
			if res, err := env.c.CallTool(context.Background(), list); err != nil || res.IsError {
				t.Fatalf("sessions_list after the fault: %v %+v", err, res)
			}
		})
	}
}

// A blocked provider call is aborted by cancelling the MCP request: the run
// is killed, the call returns at once, and the provider's request ends.
func TestCancelledSpawnAbortsABlockedProviderCall(t *testing.T) {
	t.Setenv("SESSIONPLANE_FAULT_KEY", "sk-test")
	arrived := make(chan struct{}, 1)
	gone := make(chan struct{})
	var once sync.Once
	fake := newFaultServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
		once.Do(func() { close(gone) })
	})
	env := startServer(t, faultConfig(fake.srv.URL, 120, -1), &BuildOptions{Version: "test"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "spawn_agent"
		req.Params.Arguments = map[string]any{"task": "never answered"}
		_, err := env.c.CallTool(ctx, req)
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the provider was never called")
	}
	cancel()
	select {
	case <-errc:
	case <-time.After(10 * time.Second):
		t.Fatal("spawn_agent did not return after its request was cancelled")
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the provider's HTTP request was not aborted")
	}
	// The run ends killed with a note (waited on, not slept for).
	var runs []*store.Run
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs, _ = env.st.ListRuns(context.Background(), store.RunFilter{})
		if len(runs) == 1 && store.Terminal(runs[0].State) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not end: %+v", runs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if runs[0].State != store.RunKilled || !strings.Contains(runs[0].Note, "cancelled") {
		t.Fatalf("run %s: %q", runs[0].State, runs[0].Note)
	}
}
