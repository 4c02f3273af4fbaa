package provider

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// fakeSampler is a Sampler whose behaviour each test sets; it also answers
// SupportsTools with tools.
type fakeSampler struct {
	sample func(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)
	tools  bool
}

func (f *fakeSampler) RequestSampling(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return f.sample(ctx, req)
}

func (f *fakeSampler) SupportsTools(context.Context) bool { return f.tools }

// capture returns a sample function that stores the request and answers res.
func capture(got *mcp.CreateMessageRequest, res *mcp.CreateMessageResult) func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return func(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		*got = req
		return res, nil
	}
}

func textResult(text string) *mcp.CreateMessageResult {
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent(text)},
		Model:           "claude-client-model",
		StopReason:      "endTurn",
	}
}

func newSampling(t *testing.T, s Sampler) Provider {
	t.Helper()
	p, err := New("client", Config{Kind: KindSampling}, &Options{Sampler: s})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// samplingTurn is secondTurn with an error result and a user follow-up.
func samplingTurn() Request {
	req := secondTurn("claude-sonnet-4-5", "toolu_1")
	req.Messages[2].ToolResults = append(req.Messages[2].ToolResults, ToolResult{CallID: "toolu_2", Name: "get_weather", Content: "no such city", IsError: true})
	req.Messages = append(req.Messages, Message{Role: RoleUser, Text: "And tomorrow?"})
	return req
}

func TestSamplingNeedsASampler(t *testing.T) {
	p := newSampling(t, nil)
	_, err := p.Complete(t.Context(), firstTurn("m"))
	if !errors.Is(err, ErrNoSampler) || !strings.Contains(err.Error(), "sampling provider needs a connected MCP client that supports sampling") {
		t.Errorf("err = %v", err)
	}
}

func TestSamplingRequestMapping(t *testing.T) {
	var got mcp.CreateMessageRequest
	p := newSampling(t, SamplerFunc(capture(&got, textResult("ok"))))
	req := samplingTurn()
	req.ToolChoice = ToolChoice{Mode: "any"}
	req.Thinking = "high" // no MCP equivalent: accepted, not sent
	if _, err := p.Complete(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if got.Method != "sampling/createMessage" {
		t.Errorf("method = %q", got.Method)
	}
	wire, err := json.Marshal(got.CreateMessageParams)
	if err != nil {
		t.Fatal(err)
	}
	var params map[string]any
	_ = json.Unmarshal(wire, &params)
	checks := []struct {
		path []any
		want string
	}{
		{[]any{"systemPrompt"}, `"You are a helpful assistant."`},
		{[]any{"maxTokens"}, `1024`},
		{[]any{"modelPreferences"}, `{"hints":[{"name":"claude-sonnet-4-5"}]}`},
		{[]any{"toolChoice"}, `{"mode":"required"}`},
		{[]any{"tools", 0, "name"}, `"get_weather"`},
		{[]any{"tools", 0, "inputSchema"}, string(mustCompact(t, weatherTool.Schema))},
		{[]any{"messages", 0}, `{"content":{"text":"What's the weather in Paris?","type":"text"},"role":"user"}`},
		{[]any{"messages", 1}, `{"content":[{"text":"I'll check the current weather in Paris for you.","type":"text"},{"id":"toolu_1","input":{"city":"Paris","unit":"celsius"},"name":"get_weather","type":"tool_use"}],"role":"assistant"}`},
		{[]any{"messages", 2}, `{"content":[{"content":[{"text":"18°C, light rain","type":"text"}],"toolUseId":"toolu_1","type":"tool_result"},{"content":[{"text":"no such city","type":"text"}],"isError":true,"toolUseId":"toolu_2","type":"tool_result"}],"role":"user"}`},
		{[]any{"messages", 3}, `{"content":{"text":"And tomorrow?","type":"text"},"role":"user"}`},
	}
	for _, c := range checks {
		if g := asJSON(field(params, c.path...)); g != c.want {
			t.Errorf("%v = %s\nwant %s", c.path, g, c.want)
		}
	}
	if strings.Contains(string(wire), "thinking") || strings.Contains(string(wire), "high") {
		t.Errorf("thinking leaked into the sampling request: %s", wire)
	}
}

func mustCompact(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return b
}

func TestSamplingToolChoiceModes(t *testing.T) {
	other := ToolSpec{Name: "clock", Description: "time", Schema: json.RawMessage(`{"type":"object"}`)}
	tests := []struct {
		choice    ToolChoice
		wantMode  mcp.ToolChoiceMode
		wantTools []string
	}{
		{ToolChoice{}, mcp.ToolChoiceModeAuto, []string{"get_weather", "clock"}},
		{ToolChoice{Mode: "auto"}, mcp.ToolChoiceModeAuto, []string{"get_weather", "clock"}},
		{ToolChoice{Mode: "any"}, mcp.ToolChoiceModeRequired, []string{"get_weather", "clock"}},
		{ToolChoice{Mode: "none"}, mcp.ToolChoiceModeNone, []string{"get_weather", "clock"}},
		// MCP cannot name a tool: the named tool is offered alone, required.
		{ToolChoice{Mode: "tool", Name: "clock"}, mcp.ToolChoiceModeRequired, []string{"clock"}},
	}
	for _, tt := range tests {
		var got mcp.CreateMessageRequest
		p := newSampling(t, SamplerFunc(capture(&got, textResult("ok"))))
		req := firstTurn("m")
		req.Tools = append(req.Tools, other)
		req.ToolChoice = tt.choice
		if _, err := p.Complete(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range got.Tools {
			names = append(names, tool.Name)
		}
		if got.ToolChoice == nil || got.ToolChoice.Mode != tt.wantMode || strings.Join(names, ",") != strings.Join(tt.wantTools, ",") {
			t.Errorf("%+v: toolChoice %+v tools %v, want %s %v", tt.choice, got.ToolChoice, names, tt.wantMode, tt.wantTools)
		}
	}

	// No tools: neither tools nor toolChoice.
	var got mcp.CreateMessageRequest
	p := newSampling(t, SamplerFunc(capture(&got, textResult("ok"))))
	if _, err := p.Complete(t.Context(), Request{Messages: firstTurn("").Messages, ToolChoice: ToolChoice{Mode: "any"}, MaxTokens: 300}); err != nil {
		t.Fatal(err)
	}
	if got.Tools != nil || got.ToolChoice != nil || got.ModelPreferences != nil || got.MaxTokens != 300 {
		t.Errorf("params = %+v", got.CreateMessageParams)
	}
}

func TestSamplingClientWithoutToolSupport(t *testing.T) {
	var got mcp.CreateMessageRequest
	s := &fakeSampler{sample: capture(&got, textResult("ok")), tools: false}
	p := newSampling(t, s)
	if _, err := p.Complete(t.Context(), samplingTurn()); err != nil {
		t.Fatal(err)
	}
	if got.Tools != nil || got.ToolChoice != nil {
		t.Errorf("tools sent to a client without sampling.tools: %+v %+v", got.Tools, got.ToolChoice)
	}
	wire, _ := json.Marshal(got.CreateMessageParams)
	if strings.Contains(string(wire), "tool_use") || strings.Contains(string(wire), "tool_result") {
		t.Errorf("tool blocks sent to a client without sampling.tools: %s", wire)
	}
	if !strings.Contains(string(wire), "[called tool get_weather with") || !strings.Contains(string(wire), "[tool get_weather error]") {
		t.Errorf("tool turns not kept as text: %s", wire)
	}

	s.tools = true
	if _, err := p.Complete(t.Context(), samplingTurn()); err != nil {
		t.Fatal(err)
	}
	if len(got.Tools) != 1 {
		t.Errorf("tools = %+v, want them sent when supported", got.Tools)
	}
}

func TestSamplingResultMapping(t *testing.T) {
	tests := []struct {
		name    string
		content any
		text    string
		calls   string
	}{
		{"text", mcp.NewTextContent("hello"), "hello", "null"},
		{"tool use", mcp.ToolUseContent{Type: "tool_use", ID: "tu_1", Name: "get_weather", Input: map[string]any{"city": "Paris"}}, "",
			`[{"id":"tu_1","name":"get_weather","args":{"city":"Paris"}}]`},
		{"blocks", []mcp.Content{mcp.NewTextContent("Let me look."), mcp.ToolUseContent{Type: "tool_use", ID: "tu_2", Name: "clock"}}, "Let me look.",
			`[{"id":"tu_2","name":"clock","args":{}}]`},
		// Over a transport, content arrives as decoded JSON maps.
		{"maps", []any{map[string]any{"type": "text", "text": "a"}, map[string]any{"type": "tool_use", "name": "clock", "input": map[string]any{}}}, "a",
			`[{"id":"call_1","name":"clock","args":{}}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := &mcp.CreateMessageResult{SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: tt.content}, Model: "client-model", StopReason: "toolUse"}
			p := newSampling(t, SamplerFunc(func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) { return res, nil }))
			resp, err := p.Complete(t.Context(), firstTurn("m"))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Text != tt.text || asJSON(resp.ToolCalls) != tt.calls || resp.Model != "client-model" || resp.StopReason != "toolUse" {
				t.Errorf("resp = %+v calls %s", resp, asJSON(resp.ToolCalls))
			}
		})
	}
}

func TestSamplingFailures(t *testing.T) {
	boom := errors.New("user rejected sampling request")
	tests := []struct {
		name   string
		sample func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)
		want   string
	}{
		{"client error", func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) { return nil, boom },
			"sampling/createMessage: user rejected sampling request"},
		{"no result", func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) { return nil, nil },
			"the client returned no result"},
		{"odd content", func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{SamplingMessage: mcp.SamplingMessage{Content: "plain string"}}, nil
		}, "want a content block or an array of them"},
	}
	for _, tt := range tests {
		p := newSampling(t, SamplerFunc(tt.sample))
		_, err := p.Complete(t.Context(), firstTurn("m"))
		var perr *Error
		if !errors.As(err, &perr) || !strings.Contains(perr.Message, tt.want) || perr.Provider != "client" {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	p := newSampling(t, SamplerFunc(func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) { return nil, boom }))
	_, err := p.Complete(t.Context(), firstTurn("m"))
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the client's error in the chain", err)
	}

	// Cancellation while the client is thinking.
	entered := make(chan struct{})
	p = newSampling(t, SamplerFunc(func(ctx context.Context, _ mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-entered; cancel() }()
	_, err = p.Complete(ctx, firstTurn("m"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
