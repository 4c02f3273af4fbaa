package provider

import (
	"net/http"
	"strings"
	"testing"
)

func TestChatToolCallTurn(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "openai-chat/tool_calls.json"))
	p := newHTTPProvider(t, KindOpenAIChat, f, Config{}, nil)

	req := firstTurn("gpt-4.1")
	req.MaxTokens = 1000
	resp, err := p.Complete(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ToolCalls) != 1 {
		t.Fatalf("tool calls = %+v, want 1", resp.ToolCalls)
	}
	c := resp.ToolCalls[0]
	if c.ID != "call_DdmO9pD3xa9XTPNJ32zg2hcA" || c.Name != "get_weather" || !jsonEqual(t, c.Args, []byte(`{"city":"Paris","unit":"celsius"}`)) {
		t.Errorf("tool call = %+v (args %s)", c, c.Args)
	}
	if got, want := resp.Usage, (Usage{InputTokens: 82, OutputTokens: 17}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	if resp.Text != "" || resp.StopReason != "tool_calls" || resp.Model != "gpt-4.1-2025-04-14" {
		t.Errorf("text %q stop %q model %q", resp.Text, resp.StopReason, resp.Model)
	}

	s := f.last()
	if s.Method != http.MethodPost || s.Path != "/v1/chat/completions" {
		t.Errorf("sent %s %s, want POST /v1/chat/completions", s.Method, s.Path)
	}
	if got := s.Header.Get("Authorization"); got != "Bearer sk-test" {
		t.Errorf("Authorization = %q", got)
	}
	if s.Body["max_completion_tokens"] != 1000.0 || s.Body["max_tokens"] != nil {
		t.Errorf("openai-chat must send max_completion_tokens only: %s", s.Raw)
	}
	checkGolden(t, "openai-chat/request_tool_call.json", s.Raw)
}

func TestChatToolResultThenFinalText(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "openai-chat/final_text.json"))
	p := newHTTPProvider(t, KindOpenAIChat, f, Config{}, nil)

	req := secondTurn("gpt-4.1", "call_DdmO9pD3xa9XTPNJ32zg2hcA")
	req.Messages[1].Text = "" // a tool-calls-only turn: content is null
	resp, err := p.Complete(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Text, "It is 18°C with light rain in Paris right now."; got != want || resp.StopReason != "stop" {
		t.Errorf("text = %q stop %q, want %q stop", got, resp.StopReason, want)
	}
	if got, want := resp.Usage, (Usage{InputTokens: 118, OutputTokens: 14}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	body := f.last().Body
	tests := []struct {
		i    int
		want string
	}{
		{0, `{"content":"You are a helpful assistant.","role":"system"}`},
		{1, `{"content":"What's the weather in Paris?","role":"user"}`},
		{2, `{"content":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}","name":"get_weather"},"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function"}]}`},
		{3, `{"content":"18°C, light rain","role":"tool","tool_call_id":"call_DdmO9pD3xa9XTPNJ32zg2hcA"}`},
	}
	for _, tt := range tests {
		if got := asJSON(field(body, "messages", tt.i)); got != tt.want {
			t.Errorf("messages[%d] = %s, want %s", tt.i, got, tt.want)
		}
	}
	checkGolden(t, "openai-chat/request_tool_result.json", f.last().Raw)
}

func TestChatToolChoiceAndReasoningWire(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "openai-chat/final_text.json"))
	p := newHTTPProvider(t, KindOpenAIChat, f, Config{}, nil)
	tests := []struct {
		choice   ToolChoice
		thinking string
		want     string
		effort   any
	}{
		{ToolChoice{}, "off", `"auto"`, nil},
		{ToolChoice{Mode: "any"}, "low", `"required"`, "low"},
		{ToolChoice{Mode: "none"}, "medium", `"none"`, "medium"},
		{ToolChoice{Mode: "tool", Name: "get_weather"}, "high", `{"function":{"name":"get_weather"},"type":"function"}`, "high"},
	}
	for _, tt := range tests {
		req := firstTurn("o4-mini")
		req.ToolChoice, req.Thinking = tt.choice, tt.thinking
		if _, err := p.Complete(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		body := f.last().Body
		if got := asJSON(body["tool_choice"]); got != tt.want {
			t.Errorf("%+v: tool_choice = %s, want %s", tt.choice, got, tt.want)
		}
		if got := body["reasoning_effort"]; got != tt.effort {
			t.Errorf("thinking %q: reasoning_effort = %v, want %v", tt.thinking, got, tt.effort)
		}
		if got := asJSON(field(body, "tools", 0)); !strings.HasPrefix(got, `{"function":{"description":"Get the current weather for a city.","name":"get_weather","parameters":{`) || !strings.HasSuffix(got, `"type":"function"}`) {
			t.Errorf("tools[0] = %s", got)
		}
	}
}

func TestChatCompatible(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "openai-chat/final_text.json"), replay(t, 404, "openai-chat/ollama_error.json"))
	p := newHTTPProvider(t, KindOpenAICompatible, f, Config{}, nil) // no key
	req := firstTurn("qwen2.5:7b")
	req.MaxTokens = 512
	if _, err := p.Complete(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	s := f.last()
	if s.Path != "/v1/chat/completions" || s.Header.Get("Authorization") != "" {
		t.Errorf("sent %s with Authorization %q, want no auth header", s.Path, s.Header.Get("Authorization"))
	}
	if s.Body["max_tokens"] != 512.0 || s.Body["max_completion_tokens"] != nil {
		t.Errorf("compatible servers get max_tokens: %s", s.Raw)
	}
	_, err := p.Complete(t.Context(), req)
	perr := asProviderError(t, err)
	if perr.Status != 404 || perr.Message != `api_error: model "qwen2.5:7b" not found, try pulling it first` {
		t.Errorf("error = %+v", perr)
	}

	// A compatible server with a key still gets it as a bearer token.
	p = newHTTPProvider(t, KindOpenAICompatible, f, Config{APIKey: "local-key"}, nil)
	_, _ = p.Complete(t.Context(), req)
	if got := f.last().Header.Get("Authorization"); got != "Bearer local-key" {
		t.Errorf("Authorization = %q", got)
	}
}

func TestChatOddAnswers(t *testing.T) {
	tests := []struct {
		name, body string
		check      func(t *testing.T, resp *Response, err error)
	}{
		{"bad arguments stay valid JSON", `{"object":"chat.completion","model":"m","choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"get_weather","arguments":"{city: Paris"}}]},"finish_reason":"tool_calls"}]}`,
			func(t *testing.T, resp *Response, err error) {
				if err != nil {
					t.Fatal(err)
				}
				c := resp.ToolCalls[0]
				if c.ID != "call_0" || string(c.Args) != `"{city: Paris"` {
					t.Errorf("tool call = %+v args %s", c, c.Args)
				}
			}},
		{"refusal", `{"object":"chat.completion","model":"m","choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}`,
			func(t *testing.T, resp *Response, err error) {
				if err != nil || resp.Text != "I can't help with that." {
					t.Errorf("resp %+v err %v", resp, err)
				}
			}},
		{"no choices", `{"object":"chat.completion","model":"m","choices":[]}`,
			func(t *testing.T, resp *Response, err error) {
				if err == nil || !strings.Contains(err.Error(), "no choices") {
					t.Errorf("err = %v", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, respond(200, tt.body))
			p := newHTTPProvider(t, KindOpenAICompatible, f, Config{}, nil)
			resp, err := p.Complete(t.Context(), firstTurn("m"))
			tt.check(t, resp, err)
		})
	}
}
