package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// Sampler sends an MCP sampling/createMessage request to the connected
// client and returns its answer. The MCP layer implements it for the
// session whose client declared the sampling capability (mcp-go's
// (*server.MCPServer).RequestSampling fits, through SamplerFunc, when ctx
// carries that session). It must honour ctx.
type Sampler interface {
	RequestSampling(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)
}

// ToolSupporter may be implemented by a Sampler to say whether the client
// declared the sampling.tools capability ({"sampling":{"tools":{}}}). When
// it reports false, tools offered in a Request are left out of the sampling
// request without notice (the model answers in text), and tool turns already
// in the conversation are sent as plain text. A Sampler that does not
// implement it is assumed to support tools.
type ToolSupporter interface {
	SupportsTools(ctx context.Context) bool
}

// SamplerFunc adapts a function to Sampler.
type SamplerFunc func(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)

// RequestSampling calls f.
func (f SamplerFunc) RequestSampling(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return f(ctx, req)
}

// ErrNoSampler is the cause of every sampling call made without a Sampler.
var ErrNoSampler = errors.New("sampling provider needs a connected MCP client that supports sampling")

// SamplingDefaultMaxTokens is maxTokens when the Request leaves it 0.
const SamplingDefaultMaxTokens = 1024

// samplingProvider uses the MCP client's own model.
//
// Mapping: System → systemPrompt; Model → modelPreferences.hints[0].name
// (advisory: the client picks the model); MaxTokens → maxTokens (default
// 1024); assistant tool calls → tool_use content blocks; tool results →
// a user message of tool_result blocks; tools → tools with inputSchema;
// tool_choice auto|any|none → toolChoice.mode auto|required|none. MCP has no
// way to name one tool, so a forced tool is sent as the only tool with mode
// required. Thinking has no MCP equivalent and is not sent. The client
// reports no token usage, so Usage stays zero.
type samplingProvider struct {
	name    string
	sampler Sampler
}

// Name returns the configured instance name.
func (p *samplingProvider) Name() string { return p.name }

// Complete sends one sampling/createMessage request through the Sampler.
func (p *samplingProvider) Complete(ctx context.Context, req Request) (*Response, error) {
	fail := func(cause error, format string, args ...any) *Error {
		return &Error{Provider: p.name, Model: req.Model, Message: fmt.Sprintf(format, args...), Err: cause}
	}
	if p.sampler == nil {
		return nil, fail(ErrNoSampler, "%v", ErrNoSampler)
	}
	if err := ctx.Err(); err != nil {
		return nil, fail(err, "request canceled: %v", err)
	}
	supportsTools := true
	if ts, ok := p.sampler.(ToolSupporter); ok {
		supportsTools = ts.SupportsTools(ctx)
	}
	params, err := samplingParams(req, supportsTools)
	if err != nil {
		return nil, fail(err, "%v", err)
	}
	res, err := p.sampler.RequestSampling(ctx, mcp.CreateMessageRequest{
		Request:             mcp.Request{Method: string(mcp.MethodSamplingCreateMessage)},
		CreateMessageParams: params,
	})
	if ctx.Err() != nil {
		return nil, fail(ctx.Err(), "request canceled: %v", ctx.Err())
	}
	if err != nil {
		return nil, fail(err, "sampling/createMessage: %v", err)
	}
	if res == nil {
		return nil, fail(nil, "sampling/createMessage: the client returned no result")
	}
	resp, err := samplingResponse(res)
	if err != nil {
		return nil, fail(err, "sampling/createMessage: %v", err)
	}
	return resp, nil
}

// samplingParams maps a Request to sampling/createMessage params.
func samplingParams(req Request, supportsTools bool) (mcp.CreateMessageParams, error) {
	mode, err := toolChoiceMode(req)
	if err != nil {
		return mcp.CreateMessageParams{}, err
	}
	if _, err := thinkingLevel(req); err != nil {
		return mcp.CreateMessageParams{}, err
	}
	params := mcp.CreateMessageParams{SystemPrompt: req.System, MaxTokens: req.MaxTokens}
	if params.MaxTokens <= 0 {
		params.MaxTokens = SamplingDefaultMaxTokens
	}
	if req.Model != "" {
		params.ModelPreferences = &mcp.ModelPreferences{Hints: []mcp.ModelHint{{Name: req.Model}}}
	}
	msgs := req.Messages
	if !supportsTools && hasToolTurns(msgs) {
		msgs = flattenToolTurns(msgs)
	}
	if supportsTools && len(req.Tools) > 0 {
		tools := req.Tools
		choice := mcp.ToolChoiceModeAuto
		switch mode {
		case ToolChoiceAny:
			choice = mcp.ToolChoiceModeRequired
		case ToolChoiceNone:
			choice = mcp.ToolChoiceModeNone
		case ToolChoiceTool:
			choice = mcp.ToolChoiceModeRequired
			for _, t := range req.Tools {
				if t.Name == req.ToolChoice.Name {
					tools = []ToolSpec{t}
				}
			}
		}
		for _, t := range tools {
			params.Tools = append(params.Tools, mcp.Tool{Name: t.Name, Description: t.Description, RawInputSchema: schemaOrEmpty(t.Schema)})
		}
		params.ToolChoice = &mcp.ToolChoice{Mode: choice}
	}
	for i, m := range msgs {
		switch m.Role {
		case RoleUser:
			params.Messages = append(params.Messages, mcp.SamplingMessage{Role: mcp.RoleUser, Content: mcp.NewTextContent(m.Text)})
		case RoleAssistant:
			if len(m.ToolCalls) == 0 {
				params.Messages = append(params.Messages, mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent(m.Text)})
				continue
			}
			var blocks []mcp.Content
			if m.Text != "" {
				blocks = append(blocks, mcp.NewTextContent(m.Text))
			}
			for _, c := range m.ToolCalls {
				blocks = append(blocks, mcp.ToolUseContent{Type: mcp.ContentTypeToolUse, ID: c.ID, Name: c.Name, Input: argsOrEmpty(c.Args)})
			}
			params.Messages = append(params.Messages, mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: blocks})
		case RoleTool:
			// A user message that carries tool results carries nothing else.
			var blocks []mcp.Content
			for _, r := range m.ToolResults {
				blocks = append(blocks, mcp.ToolResultContent{
					Type:      mcp.ContentTypeToolResult,
					ToolUseID: r.CallID,
					Content:   []mcp.Content{mcp.NewTextContent(r.Content)},
					IsError:   r.IsError,
				})
			}
			if len(blocks) > 0 {
				params.Messages = append(params.Messages, mcp.SamplingMessage{Role: mcp.RoleUser, Content: blocks})
			}
			if m.Text != "" {
				params.Messages = append(params.Messages, mcp.SamplingMessage{Role: mcp.RoleUser, Content: mcp.NewTextContent(m.Text)})
			}
		default:
			return mcp.CreateMessageParams{}, fmt.Errorf("messages[%d]: unknown role %q", i, m.Role)
		}
	}
	return params, nil
}

// samplingBlock is any content block of a sampling result, read through
// JSON so that typed values (in-process clients) and maps (clients over a
// transport) decode alike.
type samplingBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// samplingResponse maps a CreateMessageResult back to a Response.
func samplingResponse(res *mcp.CreateMessageResult) (*Response, error) {
	raw, err := json.Marshal(res.Content)
	if err != nil {
		return nil, fmt.Errorf("result content: %v", err)
	}
	raw = bytes.TrimSpace(raw)
	var blocks []samplingBlock
	switch {
	case len(raw) > 0 && raw[0] == '[':
		if err := json.Unmarshal(raw, &blocks); err != nil {
			return nil, fmt.Errorf("result content: %v", err)
		}
	case len(raw) > 0 && raw[0] == '{':
		var b samplingBlock
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("result content: %v", err)
		}
		blocks = []samplingBlock{b}
	default:
		return nil, fmt.Errorf("result content: want a content block or an array of them, got %s", excerpt(raw))
	}
	resp := &Response{Model: res.Model, StopReason: res.StopReason}
	var texts []string
	for i, b := range blocks {
		switch b.Type {
		case mcp.ContentTypeText:
			texts = append(texts, b.Text)
		case mcp.ContentTypeToolUse:
			if b.Name == "" {
				return nil, fmt.Errorf("result content[%d]: tool_use without name", i)
			}
			id := b.ID
			if id == "" {
				id = fmt.Sprintf("call_%d", i)
			}
			resp.ToolCalls = append(resp.ToolCalls, ToolCall{ID: id, Name: b.Name, Args: argsOrEmpty(b.Input)})
		}
	}
	resp.Text = strings.Join(texts, "")
	return resp, nil
}
