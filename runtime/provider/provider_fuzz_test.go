package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzScriptReplay feeds arbitrary documents to ParseScript and replays what
// it accepts, turn after turn, answering every tool call (FuzzParseScript in
// script_test.go checks the parsed shape): ParseScript never panics and
// fails with a message; Complete answers (or fails with an *Error naming
// the provider) within a bound whatever the turn holds — a delay_ms is cut
// short by the context — for a task that matches each conversation and for
// one that matches none, and every tool call it makes has an id, a name and
// JSON arguments, placeholders expanded included.
//
// Seeds: the f.Add documents, testdata/providers/demo.script.json and
// testdata/fuzz/FuzzScriptReplay/.
func FuzzScriptReplay(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(testdataDir, "demo.script.json")); err == nil {
		f.Add(b)
	}
	for _, doc := range []string{
		``,
		`{}`,
		`[]`,
		`{"conversations": []}`,
		`{"conversations": [{"turns": [{"text": "hi"}]}]}`,
		`{"model": "m", "conversations": [{"match": "x", "turns": [{"tool_calls": [{"name": "t", "args": {"q": "{{task}}"}}]}, {"text": "{{last_tool_result}}"}]}]}`,
		`{"conversations": [{"turns": [{"error": {"status": 529}}]}]}`,
		`{"conversations": [{"turns": [{"delay_ms": 5, "text": "late", "usage": {"input_tokens": 1, "output_tokens": 2}, "stop_reason": "s"}]}]}`,
		`{"conversations": [{"turns": [{"text": "{{nope}}"}]}]}`,
		`{"conversations": [{"turns": [{"tool_calls": [{"name": "t", "args": "{{task}}"}]}]}, {"turns": [{"text": "second fallback"}]}]}`,
		`{"conversations": [{"turns": [{"text": "a", "error": {"status": 200}}]}]}`,
		"{\"conversations\": [{\"turns\": [{\"text\": \"a\"}\n,]}]}",
		`{"conversations": [{"turns": [{"tool_calls": [{"name": "t", "args": null}]}]}], "extra": 1}`,
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScript(data)
		if err != nil {
			if s != nil {
				t.Fatalf("ParseScript returned both a script and an error: %v", err)
			}
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("ParseScript failed with an empty message")
			}
			return
		}
		if s == nil || len(s.Conversations) == 0 {
			t.Fatalf("ParseScript accepted a script with no conversation: %+v", s)
		}
		// Replay it: a turn's delay is cut short by the bound, never a hang.
		p := NewScripted("fuzz", s, nil)
		tasks := []string{"no conversation matches this \x00 task"}
		for _, c := range s.Conversations {
			if c.Match != "" {
				tasks = append(tasks, "task: "+c.Match)
			}
		}
		for _, task := range tasks {
			req := Request{Model: "m", Messages: []Message{{Role: RoleUser, Text: task}}}
			for turn := 0; turn < 3; turn++ {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				start := time.Now()
				resp, err := p.Complete(ctx, req)
				cancel()
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("Complete took %s with a 50ms context", d)
				}
				if err != nil {
					var pe *Error
					// A scripted error status without message and without a
					// standard status text (529) has an empty Message; the
					// status still names the fault (reported, not a crash).
					if !errors.As(err, &pe) || pe.Provider != "fuzz" || pe.Message == "" && pe.Status == 0 {
						t.Fatalf("scripted error is %T %v, want a *provider.Error naming the provider", err, err)
					}
					break
				}
				if resp == nil {
					t.Fatal("Complete returned neither a response nor an error")
				}
				for _, c := range resp.ToolCalls {
					if c.Name == "" || c.ID == "" || !json.Valid(c.Args) {
						t.Fatalf("scripted tool call %+v: empty name/id or args that are not JSON", c)
					}
				}
				req.Messages = append(req.Messages, Message{Role: RoleAssistant, Text: resp.Text, ToolCalls: resp.ToolCalls})
				if len(resp.ToolCalls) == 0 {
					break
				}
				var results []ToolResult
				for _, c := range resp.ToolCalls {
					results = append(results, ToolResult{CallID: c.ID, Name: c.Name, Content: `result "with" {{task}} \ quotes`})
				}
				req.Messages = append(req.Messages, Message{Role: RoleTool, ToolResults: results})
			}
		}
	})
}

// bodyTransport answers every request with one canned status, header and
// body, without a network: the fuzzers below run the real HTTP providers
// (post, retries, decoding) at the speed of the decoders.
type bodyTransport struct {
	mu     sync.Mutex
	status int
	header http.Header
	body   []byte
	sent   [][]byte
}

func (b *bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	raw, _ := io.ReadAll(r.Body)
	_ = r.Body.Close()
	b.mu.Lock()
	b.sent = append(b.sent, raw)
	status, header, body := b.status, b.header.Clone(), b.body
	b.mu.Unlock()
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Status: strconv.Itoa(status), Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

func (b *bodyTransport) set(status int, header http.Header, body []byte) {
	b.mu.Lock()
	b.status, b.header, b.body = status, header, body
	b.mu.Unlock()
}

// fuzzResponse is the shared body of the response-decoder fuzzers: the
// provider of kind gets status/body (and a retry-after header) for its first
// call, with one retry allowed and an instant sleep. Whatever comes back,
// it must not panic; a failure is a *Error naming the provider and the
// model (and the status when it was not 2xx); every wait it asks for is
// within the 60s bound; and an answer it accepts, sent back as history with
// its tool calls answered, must make a second request that encodes and
// succeeds against the recorded final answer.
func fuzzResponse(t *testing.T, kind, final string, status uint16, retryAfter string, body []byte) {
	code := int(status)
	if code < 200 || code > 599 {
		code = 200
	}
	tr := &bodyTransport{}
	h := http.Header{"Content-Type": {"application/json"}}
	if retryAfter != "" {
		h.Set("retry-after", retryAfter)
	}
	tr.set(code, h, body)
	sl := &sleepRecorder{}
	base := "http://127.0.0.1:1"
	if kind != KindAnthropic {
		base += "/v1"
	}
	p, err := New("fz", Config{Kind: kind, BaseURL: base, APIKey: "sk-test", MaxRetries: 1, Timeout: 5 * time.Second},
		&Options{HTTPClient: &http.Client{Transport: tr}, Sleep: sl.sleep})
	if err != nil {
		t.Fatal(err)
	}
	req := firstTurn("fuzz-model")
	resp, err := p.Complete(context.Background(), req)
	for _, w := range sl.recorded() {
		if w < 0 || w > maxRetryWait {
			t.Fatalf("retry wait %s outside [0, %s] (retry-after %q)", w, maxRetryWait, retryAfter)
		}
	}
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error is %T, want *provider.Error: %v", err, err)
		}
		if pe.Provider != "fz" || pe.Model != "fuzz-model" || strings.TrimSpace(pe.Message) == "" {
			t.Fatalf("error does not name provider, model and cause: %+v", pe)
		}
		if code >= 300 && pe.Status != code {
			t.Fatalf("HTTP %d reported as status %d: %v", code, pe.Status, err)
		}
		if !strings.Contains(err.Error(), "provider fz (model fuzz-model)") {
			t.Fatalf("error text does not name provider and model: %v", err)
		}
		return
	}
	if code >= 300 {
		t.Fatalf("HTTP %d accepted as an answer: %+v", code, resp)
	}
	if resp == nil {
		t.Fatal("Complete returned neither a response nor an error")
	}
	for _, c := range resp.ToolCalls {
		if c.ID == "" || c.Name == "" || !json.Valid(c.Args) {
			t.Fatalf("decoded tool call %+v: empty id/name or args that are not JSON", c)
		}
	}
	// Round trip: the accepted answer goes back as history.
	req.Messages = append(req.Messages, Message{Role: RoleAssistant, Text: resp.Text, ToolCalls: resp.ToolCalls, Reasoning: resp.Reasoning})
	if len(resp.ToolCalls) > 0 {
		var results []ToolResult
		for _, c := range resp.ToolCalls {
			results = append(results, ToolResult{CallID: c.ID, Name: c.Name, Content: "ok"})
		}
		req.Messages = append(req.Messages, Message{Role: RoleTool, ToolResults: results})
	} else {
		req.Messages = append(req.Messages, Message{Role: RoleUser, Text: "and then?"})
	}
	tr.set(200, http.Header{"Content-Type": {"application/json"}}, []byte(final))
	if _, err := p.Complete(context.Background(), req); err != nil {
		t.Fatalf("an accepted answer does not survive as history: %v", err)
	}
	tr.mu.Lock()
	last := tr.sent[len(tr.sent)-1]
	tr.mu.Unlock()
	if !json.Valid(last) {
		t.Fatalf("second request is not JSON: %.300s", last)
	}
}

// responseSeeds adds every recorded response of dir (testdata/providers/dir)
// under the statuses their names say, plus edge cases.
func responseSeeds(f *testing.F, dir string) string {
	final, err := os.ReadFile(filepath.Join(testdataDir, dir, "final_text.json"))
	if err != nil {
		f.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(testdataDir, dir))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "request_") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(testdataDir, dir, name))
		if err != nil {
			f.Fatal(err)
		}
		status := uint16(200)
		if strings.HasPrefix(name, "error_") {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "error_"), ".json"))
			status = uint16(n)
		}
		if name == "ollama_error.json" {
			status = 404
		}
		f.Add(status, "", b)
		f.Add(uint16(200), "", b[:len(b)/2]) // truncated
	}
	f.Add(uint16(429), "1.5", []byte(`{"error":{"message":"slow down"}}`))
	f.Add(uint16(503), "Wed, 21 Oct 2015 07:28:00 GMT", []byte(``))
	f.Add(uint16(529), "99999999999999999999", []byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	f.Add(uint16(200), "", []byte(`null`))
	f.Add(uint16(200), "", []byte(`{"detail":[{"loc":["body"],"msg":"x"}]}`))
	f.Add(uint16(500), "-1", []byte("<html>\xff\xfe</html>"))
	return string(final)
}

// FuzzAnthropicResponse fuzzes the Anthropic Messages decoder (parseAnthropic,
// apiErrorMessage, retry-after) through the provider's Complete.
func FuzzAnthropicResponse(f *testing.F) {
	final := responseSeeds(f, "anthropic")
	f.Add(uint16(200), "", []byte(`{"type":"message","content":[{"type":"tool_use","id":"t","name":"n","input":"not an object"},{"type":"thinking","thinking":"x","signature":"s"},{"type":"redacted_thinking","data":"d"}],"usage":{"input_tokens":-5}}`))
	f.Add(uint16(200), "", []byte(`{"type":"message","content":[1,null,{"type":"text","text":7}]}`))
	f.Fuzz(func(t *testing.T, status uint16, retryAfter string, body []byte) {
		fuzzResponse(t, KindAnthropic, final, status, retryAfter, body)
	})
}

// FuzzResponsesResponse fuzzes the OpenAI Responses decoder (parseResponses)
// through the provider's Complete.
func FuzzResponsesResponse(f *testing.F) {
	final := responseSeeds(f, "openai")
	f.Add(uint16(200), "", []byte(`{"object":"response","status":"failed","error":null}`))
	f.Add(uint16(200), "", []byte(`{"object":"response","status":"completed","output":[{"type":"function_call","call_id":"c","name":"n","arguments":"{not json"},{"type":"message","content":[{"type":"refusal","refusal":"no"}]}]}`))
	f.Fuzz(func(t *testing.T, status uint16, retryAfter string, body []byte) {
		fuzzResponse(t, KindOpenAI, final, status, retryAfter, body)
	})
}

// FuzzChatResponse fuzzes the Chat Completions decoder (parseChat) through
// the provider's Complete (kind openai-chat; openai-compatible shares it).
func FuzzChatResponse(f *testing.F) {
	final := responseSeeds(f, "openai-chat")
	f.Add(uint16(200), "", []byte(`{"choices":[{"message":{"content":null,"refusal":"no","tool_calls":[{"function":{"name":"n","arguments":"  "}},{"id":"x","function":{"name":"m","arguments":"[1,"}}]}}]}`))
	f.Add(uint16(200), "", []byte(`{"choices":[]}`))
	f.Fuzz(func(t *testing.T, status uint16, retryAfter string, body []byte) {
		fuzzResponse(t, KindOpenAIChat, final, status, retryAfter, body)
	})
}
