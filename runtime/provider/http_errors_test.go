package provider

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// wireCase is one HTTP provider kind and its recorded exchanges.
type wireCase struct {
	kind  string
	dir   string // under testdata/providers
	ok    string // a recorded successful answer
	model string
}

var wireCases = []wireCase{
	{KindAnthropic, "anthropic", "anthropic/final_text.json", claude},
	{KindOpenAI, "openai", "openai/final_text.json", "gpt-4.1"},
	{KindOpenAIChat, "openai-chat", "openai-chat/final_text.json", "gpt-4.1"},
}

// asProviderError fails the test unless err is an *Error.
func asProviderError(t *testing.T, err error) *Error {
	t.Helper()
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	return perr
}

func TestHTTPClientErrorsFailAtOnce(t *testing.T) {
	want := map[string]map[int]string{
		"anthropic": {
			400: "invalid_request_error: messages.1.content.0.tool_use.input: Input should be a valid dictionary",
			401: "authentication_error: invalid x-api-key",
		},
		"openai": {
			400: "invalid_request_error: Invalid type for 'input[2].output': expected a string, but got an object instead. (code invalid_type)",
			401: "invalid_request_error: Incorrect API key provided: sk-test.",
		},
		"openai-chat": {
			400: "invalid_request_error: Invalid type for 'messages[2].content'",
			401: "(code invalid_api_key)",
		},
	}
	for _, wc := range wireCases {
		for _, status := range []int{400, 401} {
			t.Run(wc.dir+"/"+http.StatusText(status), func(t *testing.T) {
				sl := &sleepRecorder{}
				f := newFakeAPI(t, replay(t, status, wc.dir+"/error_"+strconv.Itoa(status)+".json"))
				p := newHTTPProvider(t, wc.kind, f, Config{}, sl)
				_, err := p.Complete(t.Context(), firstTurn(wc.model))
				perr := asProviderError(t, err)
				if perr.Status != status || perr.Retryable || perr.Provider != "test-"+wc.kind || perr.Model != wc.model {
					t.Errorf("error = %+v", perr)
				}
				if !strings.Contains(perr.Message, want[wc.dir][status]) {
					t.Errorf("message = %q, want it to contain %q", perr.Message, want[wc.dir][status])
				}
				prefix := "provider test-" + wc.kind + " (model " + wc.model + "): HTTP " + strconv.Itoa(status) + ": "
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("Error() = %q, want prefix %q", err, prefix)
				}
				if n := len(f.requests()); n != 1 || len(sl.recorded()) != 0 {
					t.Errorf("%d requests, waits %v; want 1 request and no wait", n, sl.recorded())
				}
			})
		}
	}
}

func TestHTTPNonJSONErrorBodyIsExcerpted(t *testing.T) {
	page := "<html><body>" + strings.Repeat("Not Found. ", 200) + "</body></html>"
	for _, status := range []int{403, 404} {
		f := newFakeAPI(t, respond(status, page))
		p := newHTTPProvider(t, KindOpenAIChat, f, Config{}, nil)
		_, err := p.Complete(t.Context(), firstTurn("gpt-4.1"))
		perr := asProviderError(t, err)
		if perr.Status != status || perr.Retryable || !strings.HasPrefix(perr.Message, "<html><body>Not Found.") {
			t.Errorf("error = %+v", perr)
		}
		if n := utf8.RuneCountInString(perr.Message); n > maxExcerpt+1 {
			t.Errorf("message has %d characters, want at most %d", n, maxExcerpt+1)
		}
		if n := len(f.requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	}
}

func TestHTTP429HonoursRetryAfter(t *testing.T) {
	for _, wc := range wireCases {
		t.Run(wc.dir, func(t *testing.T) {
			sl := &sleepRecorder{}
			f := newFakeAPI(t, replay(t, 429, wc.dir+"/error_429.json", "retry-after", "7"), replay(t, 200, wc.ok))
			p := newHTTPProvider(t, wc.kind, f, Config{}, sl)
			resp, err := p.Complete(t.Context(), firstTurn(wc.model))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(resp.Text, "18°C") {
				t.Errorf("text = %q", resp.Text)
			}
			if got := len(f.requests()); got != 2 {
				t.Errorf("%d requests, want 2 (one retry)", got)
			}
			if got := sl.recorded(); len(got) != 1 || got[0] != 7*time.Second {
				t.Errorf("waits = %v, want [7s] from retry-after", got)
			}
			if a, b := f.requests()[0].Raw, f.requests()[1].Raw; string(a) != string(b) {
				t.Errorf("the retry sent a different body")
			}
		})
	}
}

func TestHTTPRetryAfterVariants(t *testing.T) {
	now := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		headers []string
		want    time.Duration
	}{
		{"retry-after-ms wins", []string{"retry-after-ms", "1500", "retry-after", "9"}, 1500 * time.Millisecond},
		{"fractional seconds", []string{"retry-after", "2.5"}, 2500 * time.Millisecond},
		{"HTTP date", []string{"retry-after", now.Add(12 * time.Second).Format(http.TimeFormat)}, 12 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sl := &sleepRecorder{}
			f := newFakeAPI(t, replay(t, 429, "openai/error_429.json", tt.headers...), replay(t, 200, "openai/final_text.json"))
			p, err := New("t", Config{Kind: KindOpenAI, BaseURL: f.srv.URL, APIKey: "k"}, &Options{Sleep: sl.sleep, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Complete(t.Context(), firstTurn("gpt-4.1")); err != nil {
				t.Fatal(err)
			}
			if got := sl.recorded(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("waits = %v, want [%v]", got, tt.want)
			}
		})
	}
}

func TestHTTPRetryAfterTooLongIsNotAwaited(t *testing.T) {
	sl := &sleepRecorder{}
	f := newFakeAPI(t, replay(t, 429, "anthropic/error_429.json", "retry-after", "600"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, sl)
	_, err := p.Complete(t.Context(), firstTurn(claude))
	perr := asProviderError(t, err)
	if perr.Status != 429 || perr.RetryAfter != 10*time.Minute || !strings.Contains(perr.Message, "not waiting that long") {
		t.Errorf("error = %+v", perr)
	}
	if len(f.requests()) != 1 || len(sl.recorded()) != 0 {
		t.Errorf("requests %d waits %v, want 1 and none", len(f.requests()), sl.recorded())
	}
}

func TestHTTP5xxThenSuccess(t *testing.T) {
	for _, wc := range wireCases {
		t.Run(wc.dir, func(t *testing.T) {
			sl := &sleepRecorder{}
			f := newFakeAPI(t, replay(t, 500, wc.dir+"/error_500.json"), replay(t, 200, wc.ok))
			p := newHTTPProvider(t, wc.kind, f, Config{}, sl)
			if _, err := p.Complete(t.Context(), firstTurn(wc.model)); err != nil {
				t.Fatal(err)
			}
			waits := sl.recorded()
			if len(f.requests()) != 2 || len(waits) != 1 {
				t.Fatalf("requests %d waits %v, want 2 and 1", len(f.requests()), waits)
			}
			if waits[0] < 375*time.Millisecond || waits[0] > 500*time.Millisecond {
				t.Errorf("first backoff = %v, want 0.5s less up to 25%% jitter", waits[0])
			}
		})
	}
}

func TestHTTPAnthropicOverloadedIsRetried(t *testing.T) {
	f := newFakeAPI(t, replay(t, 529, "anthropic/error_529.json"), replay(t, 503, "anthropic/error_500.json"), replay(t, 200, "anthropic/final_text.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)
	if _, err := p.Complete(t.Context(), firstTurn(claude)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestHTTPRetriesExhausted(t *testing.T) {
	sl := &sleepRecorder{}
	f := newFakeAPI(t, replay(t, 529, "anthropic/error_529.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{MaxRetries: 2}, sl)
	_, err := p.Complete(t.Context(), firstTurn(claude))
	perr := asProviderError(t, err)
	if perr.Status != 529 || !perr.Retryable || !strings.Contains(perr.Message, "overloaded_error: Overloaded (gave up after 3 attempts)") {
		t.Errorf("error = %+v", perr)
	}
	waits := sl.recorded()
	if len(f.requests()) != 3 || len(waits) != 2 {
		t.Fatalf("requests %d waits %v, want 3 and 2", len(f.requests()), waits)
	}
	if waits[1] < 750*time.Millisecond || waits[1] > time.Second {
		t.Errorf("second backoff = %v, want 1s less up to 25%%", waits[1])
	}
}

func TestHTTPRetryControls(t *testing.T) {
	t.Run("negative MaxRetries disables retries", func(t *testing.T) {
		f := newFakeAPI(t, replay(t, 500, "openai/error_500.json"), replay(t, 200, "openai/final_text.json"))
		p := newHTTPProvider(t, KindOpenAI, f, Config{MaxRetries: -1}, nil)
		_, err := p.Complete(t.Context(), firstTurn("gpt-4.1"))
		if perr := asProviderError(t, err); perr.Status != 500 || !perr.Retryable || len(f.requests()) != 1 {
			t.Errorf("error %+v after %d requests", perr, len(f.requests()))
		}
	})
	t.Run("x-should-retry false", func(t *testing.T) {
		f := newFakeAPI(t, replay(t, 500, "openai/error_500.json", "x-should-retry", "false"), replay(t, 200, "openai/final_text.json"))
		p := newHTTPProvider(t, KindOpenAI, f, Config{}, nil)
		_, err := p.Complete(t.Context(), firstTurn("gpt-4.1"))
		if perr := asProviderError(t, err); perr.Retryable || len(f.requests()) != 1 {
			t.Errorf("error %+v after %d requests", perr, len(f.requests()))
		}
	})
	t.Run("default is 3 retries", func(t *testing.T) {
		f := newFakeAPI(t, replay(t, 502, "openai/error_500.json"))
		p := newHTTPProvider(t, KindOpenAI, f, Config{}, nil)
		_, _ = p.Complete(t.Context(), firstTurn("gpt-4.1"))
		if n := len(f.requests()); n != 4 {
			t.Errorf("%d requests, want 4", n)
		}
	})
}

func TestHTTPMalformedAndTruncatedJSON(t *testing.T) {
	for _, wc := range wireCases {
		ok := string(readRecorded(t, wc.ok))
		tests := []struct {
			name, body, want string
		}{
			{"malformed", `{"id": "x", "content": [}`, "malformed JSON response"},
			{"truncated", ok[:len(ok)/2], "truncated response body"},
			{"not an object", `"ok"`, "unexpected response shape"},
			{"empty", ``, "truncated response body (0 bytes"},
		}
		for _, tt := range tests {
			t.Run(wc.dir+"/"+tt.name, func(t *testing.T) {
				f := newFakeAPI(t, respond(200, tt.body))
				p := newHTTPProvider(t, wc.kind, f, Config{}, nil)
				_, err := p.Complete(t.Context(), firstTurn(wc.model))
				perr := asProviderError(t, err)
				if !strings.Contains(perr.Message, tt.want) || perr.Retryable || perr.Model != wc.model {
					t.Errorf("error = %+v, want message containing %q", perr, tt.want)
				}
				if n := len(f.requests()); n != 1 {
					t.Errorf("%d requests, want 1", n)
				}
			})
		}
	}
}

func TestHTTPBodyCutOffInTransit(t *testing.T) {
	for _, wc := range wireCases {
		t.Run(wc.dir, func(t *testing.T) {
			f := newFakeAPI(t, cutBody(t, wc.ok), replay(t, 200, wc.ok))
			p := newHTTPProvider(t, wc.kind, f, Config{}, nil)
			if _, err := p.Complete(t.Context(), firstTurn(wc.model)); err != nil {
				t.Fatalf("the cut body was not retried: %v", err)
			}
			if n := len(f.requests()); n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
		})
	}
	f := newFakeAPI(t, cutBody(t, "openai-chat/final_text.json"))
	p := newHTTPProvider(t, KindOpenAIChat, f, Config{MaxRetries: -1}, nil)
	_, err := p.Complete(t.Context(), firstTurn("gpt-4.1"))
	if perr := asProviderError(t, err); !strings.Contains(perr.Message, "truncated after") || !perr.Retryable {
		t.Errorf("error = %+v", perr)
	}
}

func TestHTTPConnectionReset(t *testing.T) {
	for _, wc := range wireCases {
		t.Run(wc.dir, func(t *testing.T) {
			sl := &sleepRecorder{}
			f := newFakeAPI(t, resetConn(t), replay(t, 200, wc.ok))
			p := newHTTPProvider(t, wc.kind, f, Config{}, sl)
			if _, err := p.Complete(t.Context(), firstTurn(wc.model)); err != nil {
				t.Fatalf("the reset was not retried: %v", err)
			}
			if n := len(f.requests()); n != 2 || len(sl.recorded()) != 1 {
				t.Errorf("%d requests, waits %v; want 2 and one wait", n, sl.recorded())
			}
		})
	}
	f := newFakeAPI(t, resetConn(t))
	p := newHTTPProvider(t, KindAnthropic, f, Config{MaxRetries: 1}, nil)
	_, err := p.Complete(t.Context(), firstTurn(claude))
	perr := asProviderError(t, err)
	if perr.Status != 0 || !perr.Retryable || !strings.Contains(perr.Message, "connection error") || perr.Err == nil {
		t.Errorf("error = %+v", perr)
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestHTTPCancelMidRequest(t *testing.T) {
	for _, wc := range wireCases {
		t.Run(wc.dir, func(t *testing.T) {
			arrived, gone := make(chan struct{}, 1), make(chan struct{})
			f := newFakeAPI(t, blockUntilGone(arrived, gone))
			p := newHTTPProvider(t, wc.kind, f, Config{}, nil)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				_, err := p.Complete(ctx, firstTurn(wc.model))
				done <- err
			}()
			<-arrived
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled in the chain", err)
				}
				if perr := asProviderError(t, err); !strings.Contains(perr.Message, "request canceled") {
					t.Errorf("message = %q", perr.Message)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Complete did not return after cancel")
			}
			select {
			case <-gone:
			case <-time.After(5 * time.Second):
				t.Fatal("the server never saw the client go away")
			}
			if n := len(f.requests()); n != 1 {
				t.Errorf("%d requests, want 1 (no retry after cancel)", n)
			}
		})
	}
}

func TestHTTPCancelDuringBackoff(t *testing.T) {
	answered := make(chan struct{})
	f := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		respond(429, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`, "retry-after", "30")(w, r)
		close(answered)
	})
	// The real timer: the wait must end on cancel, not after 30s.
	p, err := New("t", Config{Kind: KindAnthropic, BaseURL: f.srv.URL, APIKey: "k"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := p.Complete(ctx, firstTurn(claude))
		done <- err
	}()
	<-answered
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backoff wait ignored the cancel")
	}
}

func TestHTTPPerAttemptTimeout(t *testing.T) {
	arrived, gone := make(chan struct{}, 4), make(chan struct{})
	f := newFakeAPI(t, blockUntilGone(arrived, gone))
	p := newHTTPProvider(t, KindOpenAIChat, f, Config{Timeout: 50 * time.Millisecond, MaxRetries: -1}, nil)
	_, err := p.Complete(t.Context(), firstTurn("gpt-4.1"))
	perr := asProviderError(t, err)
	if !strings.Contains(perr.Message, "no answer within 50ms") || !perr.Retryable || errors.Is(err, context.Canceled) {
		t.Errorf("error = %+v", perr)
	}
}
