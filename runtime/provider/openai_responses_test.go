package provider

import (
	"net/http"
	"testing"
)

func TestResponsesFunctionCallTurn(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "openai/function_call.json"))
	p := newHTTPProvider(t, KindOpenAI, f, Config{}, nil)

	resp, err := p.Complete(t.Context(), firstTurn("gpt-4.1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ToolCalls) != 1 {
		t.Fatalf("tool calls = %+v, want 1", resp.ToolCalls)
	}
	// The call_id, not the item id, is what function_call_output answers.
	c := resp.ToolCalls[0]
	if c.ID != "call_12345xyz" || c.Name != "get_weather" || !jsonEqual(t, c.Args, []byte(`{"city":"Paris","unit":"celsius"}`)) {
		t.Errorf("tool call = %+v", c)
	}
	if got, want := resp.Usage, (Usage{InputTokens: 291, OutputTokens: 23}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	if resp.Text != "" || resp.StopReason != "completed" || resp.Model != "gpt-4.1-2025-04-14" {
		t.Errorf("text %q stop %q model %q", resp.Text, resp.StopReason, resp.Model)
	}

	s := f.last()
	if s.Method != http.MethodPost || s.Path != "/v1/responses" {
		t.Errorf("sent %s %s, want POST /v1/responses", s.Method, s.Path)
	}
	if got := s.Header.Get("Authorization"); got != "Bearer sk-test" {
		t.Errorf("Authorization = %q", got)
	}
	if s.Body["store"] != false || field(s.Body, "tools", 0, "strict") != false || field(s.Body, "tools", 0, "type") != "function" {
		t.Errorf("store/strict/type not as documented: %s", s.Raw)
	}
	checkGolden(t, "openai/request_tool_call.json", s.Raw)
}

func TestResponsesToolResultThenFinalText(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "openai/final_text.json"))
	p := newHTTPProvider(t, KindOpenAI, f, Config{}, nil)

	req := secondTurn("gpt-4.1", "call_12345xyz")
	req.Messages = append(req.Messages, Message{Role: RoleTool, ToolResults: []ToolResult{{CallID: "call_x", Name: "get_weather", Content: "city not found", IsError: true}}})
	resp, err := p.Complete(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Text, "It is 18°C with light rain in Paris right now."; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if got, want := resp.Usage, (Usage{InputTokens: 328, OutputTokens: 16}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	body := f.last().Body
	tests := []struct {
		i    int
		want string
	}{
		{0, `{"content":"What's the weather in Paris?","role":"user","type":"message"}`},
		{1, `{"content":"I'll check the current weather in Paris for you.","role":"assistant","type":"message"}`},
		{2, `{"arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}","call_id":"call_12345xyz","name":"get_weather","type":"function_call"}`},
		{3, `{"call_id":"call_12345xyz","output":"18°C, light rain","type":"function_call_output"}`},
		{4, `{"call_id":"call_x","output":"Error: city not found","type":"function_call_output"}`},
	}
	for _, tt := range tests {
		if got := asJSON(field(body, "input", tt.i)); got != tt.want {
			t.Errorf("input[%d] = %s, want %s", tt.i, got, tt.want)
		}
	}
	if body["instructions"] != "You are a helpful assistant." {
		t.Errorf("instructions = %v", body["instructions"])
	}
	req.Messages = req.Messages[:len(req.Messages)-1]
	if _, err := p.Complete(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "openai/request_tool_result.json", f.last().Raw)
}

func TestResponsesToolChoiceAndReasoningWire(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "openai/final_text.json"))
	p := newHTTPProvider(t, KindOpenAI, f, Config{}, nil)
	tests := []struct {
		choice    ToolChoice
		thinking  string
		want      string
		reasoning string
	}{
		{ToolChoice{}, "", `"auto"`, "null"},
		{ToolChoice{Mode: "any"}, "low", `"required"`, `{"effort":"low"}`},
		{ToolChoice{Mode: "none"}, "medium", `"none"`, `{"effort":"medium"}`},
		{ToolChoice{Mode: "tool", Name: "get_weather"}, "high", `{"name":"get_weather","type":"function"}`, `{"effort":"high"}`},
	}
	for _, tt := range tests {
		req := firstTurn("o4-mini")
		req.ToolChoice, req.Thinking, req.MaxTokens = tt.choice, tt.thinking, 2000
		if _, err := p.Complete(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		body := f.last().Body
		if got := asJSON(body["tool_choice"]); got != tt.want {
			t.Errorf("%+v: tool_choice = %s, want %s", tt.choice, got, tt.want)
		}
		if got := asJSON(body["reasoning"]); got != tt.reasoning {
			t.Errorf("thinking %q: reasoning = %s, want %s", tt.thinking, got, tt.reasoning)
		}
		if body["max_output_tokens"] != 2000.0 {
			t.Errorf("max_output_tokens = %v", body["max_output_tokens"])
		}
	}
	req := Request{Model: "o4-mini", Messages: firstTurn("").Messages, ToolChoice: ToolChoice{Mode: "any"}}
	if _, err := p.Complete(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if body := f.last().Body; body["tools"] != nil || body["tool_choice"] != nil {
		t.Errorf("no tools offered, yet sent tools %v tool_choice %v", body["tools"], body["tool_choice"])
	}
}

func TestResponsesIncompleteAndFailed(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "openai/incomplete.json"),
		respond(200, `{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"The model failed to generate a response."},"output":[]}`))
	p := newHTTPProvider(t, KindOpenAI, f, Config{}, nil)
	resp, err := p.Complete(t.Context(), firstTurn("o4-mini"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StopReason != "max_output_tokens" || resp.Text != "" || resp.Usage.OutputTokens != 16 {
		t.Errorf("response = %+v", resp)
	}
	_, err = p.Complete(t.Context(), firstTurn("o4-mini"))
	if perr := asProviderError(t, err); perr.Message != "response failed: server_error: The model failed to generate a response." {
		t.Errorf("error = %+v", perr)
	}
}
