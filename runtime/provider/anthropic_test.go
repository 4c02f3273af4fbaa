package provider

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

const claude = "claude-sonnet-4-5-20250929"

func TestAnthropicToolCallTurn(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "anthropic/tool_use.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)

	resp, err := p.Complete(t.Context(), firstTurn(claude))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Text, "I'll check the current weather in Paris for you."; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if len(resp.ToolCalls) != 1 {
		t.Fatalf("tool calls = %+v, want 1", resp.ToolCalls)
	}
	c := resp.ToolCalls[0]
	if c.ID != "toolu_01A09q90qw90lq917835lq9" || c.Name != "get_weather" || !jsonEqual(t, c.Args, []byte(`{"city":"Paris","unit":"celsius"}`)) {
		t.Errorf("tool call = %+v", c)
	}
	if got, want := resp.Usage, (Usage{InputTokens: 384, OutputTokens: 92}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	if resp.StopReason != "tool_use" || resp.Model != claude {
		t.Errorf("stop reason %q model %q", resp.StopReason, resp.Model)
	}

	s := f.last()
	if s.Method != http.MethodPost || s.Path != "/v1/messages" {
		t.Errorf("sent %s %s, want POST /v1/messages", s.Method, s.Path)
	}
	for h, want := range map[string]string{"X-Api-Key": "sk-test", "Anthropic-Version": "2023-06-01", "Content-Type": "application/json"} {
		if got := s.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if s.Header.Get("Authorization") != "" {
		t.Errorf("Anthropic request carries an Authorization header")
	}
	checkGolden(t, "anthropic/request_tool_call.json", s.Raw)
}

func TestAnthropicToolResultThenFinalText(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "anthropic/final_text.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)

	resp, err := p.Complete(t.Context(), secondTurn(claude, "toolu_01A09q90qw90lq917835lq9"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Text, "It is 18°C with light rain in Paris right now."; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if len(resp.ToolCalls) != 0 || resp.StopReason != "end_turn" {
		t.Errorf("tool calls %v stop %q, want none and end_turn", resp.ToolCalls, resp.StopReason)
	}
	// cache reads count as input tokens.
	if got, want := resp.Usage, (Usage{InputTokens: 512 + 256, OutputTokens: 21}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	body := f.last().Body
	if got, want := asJSON(field(body, "messages", 2)), `{"content":[{"content":"18°C, light rain","tool_use_id":"toolu_01A09q90qw90lq917835lq9","type":"tool_result"}],"role":"user"}`; got != want {
		t.Errorf("tool result turn = %s, want %s", got, want)
	}
	checkGolden(t, "anthropic/request_tool_result.json", f.last().Raw)
}

func TestAnthropicToolChoiceWire(t *testing.T) {
	withHistory := secondTurn(claude, "toolu_1")
	tests := []struct {
		name      string
		req       Request
		choice    ToolChoice
		wantTools bool
		want      string // tool_choice as sent; "" = absent
	}{
		{"auto", firstTurn(claude), ToolChoice{}, true, `{"type":"auto"}`},
		{"any", firstTurn(claude), ToolChoice{Mode: "any"}, true, `{"type":"any"}`},
		{"tool", firstTurn(claude), ToolChoice{Mode: "tool", Name: "get_weather"}, true, `{"name":"get_weather","type":"tool"}`},
		{"none sends no tools", firstTurn(claude), ToolChoice{Mode: "none"}, false, ""},
		{"none with tool history keeps tools", withHistory, ToolChoice{Mode: "none"}, true, `{"type":"none"}`},
		{"no tools", Request{Model: claude, Messages: firstTurn(claude).Messages}, ToolChoice{Mode: "any"}, false, ""},
	}
	f := newFakeAPI(t, replay(t, 200, "anthropic/final_text.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.ToolChoice = tt.choice
			if _, err := p.Complete(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			body := f.last().Body
			if got := body["tools"] != nil; got != tt.wantTools {
				t.Errorf("tools sent = %v, want %v", got, tt.wantTools)
			}
			got := ""
			if v, ok := body["tool_choice"]; ok {
				got = asJSON(v)
			}
			if got != tt.want {
				t.Errorf("tool_choice = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestAnthropicToolHistoryFlattenedWithoutTools(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "anthropic/final_text.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)
	req := secondTurn(claude, "toolu_1")
	req.Tools = nil // active_tools emptied mid-conversation
	if _, err := p.Complete(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	raw := string(f.last().Raw)
	if strings.Contains(raw, `"tool_use"`) || strings.Contains(raw, `"tool_result"`) {
		t.Errorf("tool blocks sent without tools (Anthropic rejects that): %s", raw)
	}
	if !strings.Contains(raw, "[called tool get_weather with") || !strings.Contains(raw, "18°C, light rain") {
		t.Errorf("flattened history lost the tool turn: %s", raw)
	}
}

func TestAnthropicThinking(t *testing.T) {
	tests := []struct {
		level     string
		maxTokens int
		want      string // thinking as sent
		wantMax   float64
	}{
		{"low", 0, `{"budget_tokens":1024,"type":"enabled"}`, 4096},
		{"medium", 0, `{"budget_tokens":4096,"type":"enabled"}`, 4096 + 4096},
		{"high", 8000, `{"budget_tokens":16384,"type":"enabled"}`, 8000 + 16384},
		{"high", 20000, `{"budget_tokens":16384,"type":"enabled"}`, 20000},
		{"off", 100, "null", 100},
	}
	f := newFakeAPI(t, replay(t, 200, "anthropic/final_text.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)
	for _, tt := range tests {
		req := firstTurn(claude)
		req.Thinking, req.MaxTokens = tt.level, tt.maxTokens
		if _, err := p.Complete(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		body := f.last().Body
		if got := asJSON(body["thinking"]); got != tt.want {
			t.Errorf("thinking %s: sent %s, want %s", tt.level, got, tt.want)
		}
		if got := body["max_tokens"]; got != tt.wantMax {
			t.Errorf("thinking %s max %d: max_tokens = %v, want %v", tt.level, tt.maxTokens, got, tt.wantMax)
		}
		if mt, _ := body["max_tokens"].(float64); tt.level != "off" && mt <= float64(anthropicBudgets[tt.level]) {
			t.Errorf("max_tokens %v not above the budget", mt)
		}
	}
}

func TestAnthropicForcedToolWithThinkingFailsBeforeSending(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "anthropic/final_text.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)
	for _, choice := range []ToolChoice{{Mode: "any"}, {Mode: "tool", Name: "get_weather"}} {
		req := firstTurn(claude)
		req.Thinking, req.ToolChoice = "medium", choice
		_, err := p.Complete(t.Context(), req)
		var perr *Error
		if !errors.As(err, &perr) || !strings.Contains(err.Error(), "Anthropic rejects a forced tool choice while extended thinking is enabled") {
			t.Errorf("%+v: err = %v, want the Anthropic thinking/tool_choice error", choice, err)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestAnthropicThinkingBlocksRoundTrip(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "anthropic/thinking_tool_use.json"), replay(t, 200, "anthropic/final_text.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)
	req := firstTurn(claude)
	req.Thinking = "low"
	resp, err := p.Complete(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Reasoning == nil || resp.Reasoning.Format != "anthropic" {
		t.Fatalf("reasoning = %+v, want anthropic thinking blocks", resp.Reasoning)
	}
	// The loop stores the turn with its Reasoning and sends the tool result.
	req.Messages = append(req.Messages,
		Message{Role: RoleAssistant, ToolCalls: resp.ToolCalls, Reasoning: resp.Reasoning},
		Message{Role: RoleTool, ToolResults: []ToolResult{{CallID: resp.ToolCalls[0].ID, Name: "get_weather", Content: "18°C"}}},
	)
	if _, err := p.Complete(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	body := f.last().Body
	first := field(body, "messages", 1, "content", 0)
	if field(first, "type") != "thinking" || !strings.HasPrefix(field(first, "signature").(string), "EqQBCgIYAhIM") {
		t.Errorf("assistant turn does not start with the signed thinking block: %s", asJSON(field(body, "messages", 1)))
	}
	if asJSON(body["thinking"]) != `{"budget_tokens":1024,"type":"enabled"}` {
		t.Errorf("thinking = %s", asJSON(body["thinking"]))
	}

	// Without the blocks (say the turn came from another provider) thinking
	// is left off rather than sending a request Anthropic refuses.
	req.Messages[1].Reasoning = nil
	if _, err := p.Complete(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if th, ok := f.last().Body["thinking"]; ok {
		t.Errorf("thinking sent without the turn's thinking blocks: %s", asJSON(th))
	}
}

func TestAnthropicRejectsBadRequestBeforeSending(t *testing.T) {
	f := newFakeAPI(t, replay(t, 200, "anthropic/final_text.json"))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)
	tests := []struct {
		name string
		mut  func(*Request)
		want string
	}{
		{"unknown tool", func(r *Request) { r.ToolChoice = ToolChoice{Mode: "tool", Name: "nope"} }, `forced tool "nope" is not among`},
		{"tool without name", func(r *Request) { r.ToolChoice = ToolChoice{Mode: "tool"} }, "needs a tool name"},
		{"bad mode", func(r *Request) { r.ToolChoice = ToolChoice{Mode: "required"} }, `unknown mode "required"`},
		{"bad thinking", func(r *Request) { r.Thinking = "max" }, `unknown level "max"`},
		{"bad role", func(r *Request) { r.Messages[0].Role = "system" }, `unknown role "system"`},
	}
	for _, tt := range tests {
		req := firstTurn(claude)
		tt.mut(&req)
		_, err := p.Complete(context.Background(), req)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "provider test-anthropic") {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestAnthropicUnexpectedShape(t *testing.T) {
	f := newFakeAPI(t, respond(200, `{"type":"completion","completion":"hi"}`))
	p := newHTTPProvider(t, KindAnthropic, f, Config{}, nil)
	_, err := p.Complete(t.Context(), firstTurn(claude))
	if err == nil || !strings.Contains(err.Error(), `type "completion", want "message"`) {
		t.Errorf("err = %v", err)
	}
}
