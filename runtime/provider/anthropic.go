package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// anthropicProvider speaks the Anthropic Messages API (POST /v1/messages).
//
// Mapping: System → system; tool results travel as tool_result blocks in a
// user turn (consecutive turns of one role are merged); tool_choice
// auto|any|tool → {"type":...}; "none" sends no tools at all, except when
// the conversation already holds tool blocks (Anthropic then requires tools
// to be declared) where it sends the tools with {"type":"none"}. Thinking
// low|medium|high → {"type":"enabled","budget_tokens":1024|4096|16384} with
// max_tokens raised above the budget; Anthropic rejects a forced tool choice
// with thinking, so that combination fails before sending.
type anthropicProvider struct {
	http *httpClient
}

// anthropicDefaultMaxTokens is max_tokens when the Request leaves it 0;
// the Messages API requires the field.
const anthropicDefaultMaxTokens = 4096

// anthropicBudgets maps thinking levels to budget_tokens.
var anthropicBudgets = map[string]int{ThinkingLow: 1024, ThinkingMedium: 4096, ThinkingHigh: 16384}

type anthropicRequest struct {
	Model      string               `json:"model"`
	MaxTokens  int                  `json:"max_tokens"`
	System     string               `json:"system,omitempty"`
	Messages   []anthropicMessage   `json:"messages"`
	Tools      []anthropicTool      `json:"tools,omitempty"`
	ToolChoice *anthropicToolChoice `json:"tool_choice,omitempty"`
	Thinking   *anthropicThinking   `json:"thinking,omitempty"`
}

type anthropicMessage struct {
	Role    string `json:"role"`
	Content []any  `json:"content"`
}

type anthropicText struct {
	Type string `json:"type"` // "text"
	Text string `json:"text"`
}

type anthropicToolUse struct {
	Type  string          `json:"type"` // "tool_use"
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type anthropicToolResult struct {
	Type      string `json:"type"` // "tool_result"
	ToolUseID string `json:"tool_use_id"`
	Content   string `json:"content,omitempty"`
	IsError   bool   `json:"is_error,omitempty"`
}

type anthropicTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthropicToolChoice struct {
	Type string `json:"type"`
	Name string `json:"name,omitempty"`
}

type anthropicThinking struct {
	Type         string `json:"type"` // "enabled"
	BudgetTokens int    `json:"budget_tokens"`
}

type anthropicResponse struct {
	ID         string            `json:"id"`
	Type       string            `json:"type"`
	Role       string            `json:"role"`
	Model      string            `json:"model"`
	Content    []json.RawMessage `json:"content"`
	StopReason string            `json:"stop_reason"`
	Usage      struct {
		InputTokens              int `json:"input_tokens"`
		OutputTokens             int `json:"output_tokens"`
		CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	} `json:"usage"`
}

type anthropicBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// Name returns the configured instance name.
func (p *anthropicProvider) Name() string { return p.http.name }

// Complete sends one Messages API call.
func (p *anthropicProvider) Complete(ctx context.Context, req Request) (*Response, error) {
	return exchange(ctx, p.http, req.Model, "/v1/messages", func() (*anthropicRequest, error) { return p.buildRequest(req) }, parseAnthropic)
}

func (p *anthropicProvider) buildRequest(req Request) (*anthropicRequest, error) {
	mode, err := toolChoiceMode(req)
	if err != nil {
		return nil, err
	}
	level, err := thinkingLevel(req)
	if err != nil {
		return nil, err
	}
	msgs := req.Messages
	toolTurns := hasToolTurns(msgs)
	sendTools := len(req.Tools) > 0 && (mode != ToolChoiceNone || toolTurns)
	if !sendTools && toolTurns {
		msgs = flattenToolTurns(msgs) // Anthropic refuses tool blocks without tools
	}
	out := &anthropicRequest{Model: req.Model, MaxTokens: req.MaxTokens, System: req.System}
	if out.MaxTokens <= 0 {
		out.MaxTokens = anthropicDefaultMaxTokens
	}
	if sendTools {
		for _, t := range req.Tools {
			out.Tools = append(out.Tools, anthropicTool{Name: t.Name, Description: t.Description, InputSchema: schemaOrEmpty(t.Schema)})
		}
		switch mode {
		case ToolChoiceAny:
			out.ToolChoice = &anthropicToolChoice{Type: "any"}
		case ToolChoiceTool:
			out.ToolChoice = &anthropicToolChoice{Type: "tool", Name: req.ToolChoice.Name}
		case ToolChoiceNone:
			out.ToolChoice = &anthropicToolChoice{Type: "none"}
		default:
			out.ToolChoice = &anthropicToolChoice{Type: "auto"}
		}
	}
	if level != ThinkingOff {
		if sendTools && (mode == ToolChoiceAny || mode == ToolChoiceTool) {
			return nil, fmt.Errorf("tool_choice %q with thinking %q: Anthropic rejects a forced tool choice while extended thinking is enabled; use tool_choice auto or set thinking off", mode, level)
		}
		if lastAssistantLacksThinking(msgs) {
			p.http.logger.Info("thinking left off for this call: the last assistant tool-use turn carries no Anthropic thinking blocks, which the API requires",
				"provider", p.http.name, "model", req.Model)
		} else {
			budget := anthropicBudgets[level]
			out.Thinking = &anthropicThinking{Type: "enabled", BudgetTokens: budget}
			if out.MaxTokens <= budget {
				out.MaxTokens += budget
			}
		}
	}
	out.Messages, err = anthropicMessages(msgs)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lastAssistantLacksThinking reports whether the final assistant turn calls
// tools without the signed thinking blocks Anthropic wants back.
func lastAssistantLacksThinking(msgs []Message) bool {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == RoleAssistant {
			r := msgs[i].Reasoning
			return len(msgs[i].ToolCalls) > 0 && (r == nil || r.Format != KindAnthropic)
		}
	}
	return false
}

// anthropicMessages maps the conversation, merging consecutive turns of
// one role (tool results become user turns).
func anthropicMessages(msgs []Message) ([]anthropicMessage, error) {
	var out []anthropicMessage
	for i, m := range msgs {
		var role string
		var blocks []any
		switch m.Role {
		case RoleUser:
			role = "user"
		case RoleAssistant:
			role = "assistant"
			if m.Reasoning != nil && m.Reasoning.Format == KindAnthropic {
				var items []json.RawMessage
				if err := json.Unmarshal(m.Reasoning.Items, &items); err != nil {
					return nil, fmt.Errorf("messages[%d].reasoning: not a JSON array of thinking blocks: %v", i, err)
				}
				for _, it := range items {
					blocks = append(blocks, it)
				}
			}
		case RoleTool:
			role = "user"
			for _, r := range m.ToolResults {
				blocks = append(blocks, anthropicToolResult{Type: "tool_result", ToolUseID: r.CallID, Content: r.Content, IsError: r.IsError})
			}
		default:
			return nil, fmt.Errorf("messages[%d]: unknown role %q", i, m.Role)
		}
		if strings.TrimSpace(m.Text) != "" { // the API rejects empty text blocks
			blocks = append(blocks, anthropicText{Type: "text", Text: m.Text})
		}
		for _, c := range m.ToolCalls {
			blocks = append(blocks, anthropicToolUse{Type: "tool_use", ID: c.ID, Name: c.Name, Input: argsOrEmpty(c.Args)})
		}
		if len(blocks) == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Role == role {
			out[n-1].Content = append(out[n-1].Content, blocks...)
			continue
		}
		out = append(out, anthropicMessage{Role: role, Content: blocks})
	}
	return out, nil
}

func parseAnthropic(raw []byte) (*Response, error) {
	var r anthropicResponse
	if err := decodeJSON(raw, &r); err != nil {
		return nil, err
	}
	if r.Type != "message" {
		return nil, fmt.Errorf("unexpected response: type %q, want \"message\"; body: %s", r.Type, excerpt(raw))
	}
	resp := &Response{
		StopReason: r.StopReason,
		Model:      r.Model,
		Usage: Usage{
			InputTokens:  r.Usage.InputTokens + r.Usage.CacheCreationInputTokens + r.Usage.CacheReadInputTokens,
			OutputTokens: r.Usage.OutputTokens,
		},
	}
	var texts []string
	var thinking []json.RawMessage
	for i, rawBlock := range r.Content {
		var b anthropicBlock
		if err := json.Unmarshal(rawBlock, &b); err != nil {
			return nil, fmt.Errorf("unexpected response: content[%d]: %v", i, err)
		}
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "tool_use":
			if b.ID == "" || b.Name == "" {
				return nil, fmt.Errorf("unexpected response: content[%d]: tool_use without id or name", i)
			}
			resp.ToolCalls = append(resp.ToolCalls, ToolCall{ID: b.ID, Name: b.Name, Args: argsOrEmpty(b.Input)})
		case "thinking", "redacted_thinking":
			thinking = append(thinking, rawBlock)
		}
	}
	resp.Text = strings.Join(texts, "")
	if len(thinking) > 0 {
		items, _ := json.Marshal(thinking)
		resp.Reasoning = &Reasoning{Format: KindAnthropic, Items: items}
	}
	return resp, nil
}
