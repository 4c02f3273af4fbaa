package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// chatProvider speaks OpenAI Chat Completions (POST {base}/chat/completions)
// for kind openai-chat and, with compatible set, for any server that copies
// it (Ollama, vLLM, llama.cpp, LM Studio), where the key may be empty.
//
// Mapping: System → a leading system message; assistant tool calls →
// tool_calls with function.arguments as a JSON string; each tool result → a
// role "tool" message with tool_call_id (an error result is prefixed
// "Error: ", the API has no error flag). tool_choice auto|any|none|tool →
// "auto"|"required"|"none"|{"type":"function","function":{"name":N}}.
// Thinking → reasoning_effort. MaxTokens → max_completion_tokens for
// openai-chat (OpenAI rejects max_tokens for reasoning models) and
// max_tokens for compatible servers (which mostly know only that one).
type chatProvider struct {
	http       *httpClient
	compatible bool
}

type chatRequest struct {
	Model               string        `json:"model"`
	Messages            []chatMessage `json:"messages"`
	Tools               []chatTool    `json:"tools,omitempty"`
	ToolChoice          any           `json:"tool_choice,omitempty"`
	ReasoningEffort     string        `json:"reasoning_effort,omitempty"`
	MaxCompletionTokens int           `json:"max_completion_tokens,omitempty"`
	MaxTokens           int           `json:"max_tokens,omitempty"`
}

type chatMessage struct {
	Role       string         `json:"role"`
	Content    *string        `json:"content"` // null for a tool-calls-only assistant turn
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type chatToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"` // "function"
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatTool struct {
	Type     string       `json:"type"` // "function"
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

type chatNamedChoice struct {
	Type     string `json:"type"` // "function"
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

type chatResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role      string         `json:"role"`
			Content   *string        `json:"content"`
			Refusal   *string        `json:"refusal"`
			ToolCalls []chatToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// Name returns the configured instance name.
func (p *chatProvider) Name() string { return p.http.name }

// Complete sends one Chat Completions call.
func (p *chatProvider) Complete(ctx context.Context, req Request) (*Response, error) {
	return exchange(ctx, p.http, req.Model, "/chat/completions", func() (*chatRequest, error) { return p.buildRequest(req) }, parseChat)
}

func (p *chatProvider) buildRequest(req Request) (*chatRequest, error) {
	mode, err := toolChoiceMode(req)
	if err != nil {
		return nil, err
	}
	level, err := thinkingLevel(req)
	if err != nil {
		return nil, err
	}
	out := &chatRequest{Model: req.Model}
	if p.compatible {
		out.MaxTokens = req.MaxTokens
	} else {
		out.MaxCompletionTokens = req.MaxTokens
	}
	if level != ThinkingOff {
		out.ReasoningEffort = level
	}
	if len(req.Tools) > 0 {
		for _, t := range req.Tools {
			out.Tools = append(out.Tools, chatTool{Type: "function", Function: chatFunction{Name: t.Name, Description: t.Description, Parameters: schemaOrEmpty(t.Schema)}})
		}
		switch mode {
		case ToolChoiceAny:
			out.ToolChoice = "required"
		case ToolChoiceNone:
			out.ToolChoice = "none"
		case ToolChoiceTool:
			var c chatNamedChoice
			c.Type = "function"
			c.Function.Name = req.ToolChoice.Name
			out.ToolChoice = c
		default:
			out.ToolChoice = "auto"
		}
	}
	if req.System != "" {
		out.Messages = append(out.Messages, chatMessage{Role: "system", Content: ptr(req.System)})
	}
	for i, m := range req.Messages {
		switch m.Role {
		case RoleUser:
			out.Messages = append(out.Messages, chatMessage{Role: "user", Content: ptr(m.Text)})
		case RoleAssistant:
			cm := chatMessage{Role: "assistant"}
			if m.Text != "" || len(m.ToolCalls) == 0 {
				cm.Content = ptr(m.Text)
			}
			for _, c := range m.ToolCalls {
				tc := chatToolCall{ID: c.ID, Type: "function"}
				tc.Function.Name = c.Name
				tc.Function.Arguments = string(argsOrEmpty(c.Args))
				cm.ToolCalls = append(cm.ToolCalls, tc)
			}
			out.Messages = append(out.Messages, cm)
		case RoleTool:
			for _, r := range m.ToolResults {
				out.Messages = append(out.Messages, chatMessage{Role: "tool", ToolCallID: r.CallID, Content: ptr(toolResultText(r))})
			}
			if m.Text != "" {
				out.Messages = append(out.Messages, chatMessage{Role: "user", Content: ptr(m.Text)})
			}
		default:
			return nil, fmt.Errorf("messages[%d]: unknown role %q", i, m.Role)
		}
	}
	return out, nil
}

func parseChat(raw []byte) (*Response, error) {
	var r chatResponse
	if err := decodeJSON(raw, &r); err != nil {
		return nil, err
	}
	if len(r.Choices) == 0 {
		return nil, fmt.Errorf("unexpected response: no choices; body: %s", excerpt(raw))
	}
	ch := r.Choices[0]
	resp := &Response{
		StopReason: ch.FinishReason,
		Model:      r.Model,
		Usage:      Usage{InputTokens: r.Usage.PromptTokens, OutputTokens: r.Usage.CompletionTokens},
	}
	if ch.Message.Content != nil {
		resp.Text = *ch.Message.Content
	}
	if strings.TrimSpace(resp.Text) == "" && ch.Message.Refusal != nil {
		resp.Text = *ch.Message.Refusal
	}
	for i, c := range ch.Message.ToolCalls {
		if c.Function.Name == "" {
			return nil, fmt.Errorf("unexpected response: choices[0].message.tool_calls[%d]: no function name", i)
		}
		id := c.ID
		if id == "" { // some compatible servers omit it
			id = fmt.Sprintf("call_%d", i)
		}
		resp.ToolCalls = append(resp.ToolCalls, ToolCall{ID: id, Name: c.Function.Name, Args: argsOrEmpty(json.RawMessage(c.Function.Arguments))})
	}
	return resp, nil
}

func ptr[T any](v T) *T { return &v }
