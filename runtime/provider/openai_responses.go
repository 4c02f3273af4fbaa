package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// responsesProvider speaks the OpenAI Responses API (POST {base}/responses).
//
// Mapping: System → instructions; each turn → an input item: user and
// assistant text as {"type":"message","role",...,"content":text},
// assistant tool calls as {"type":"function_call","call_id","name",
// "arguments"}, tool results as {"type":"function_call_output","call_id",
// "output"} (an error result is prefixed "Error: "). Tools are function
// tools with "strict": false (the API defaults strict on, which rejects
// ordinary schemas). tool_choice auto|any|none|tool →
// "auto"|"required"|"none"|{"type":"function","name":N}; thinking →
// reasoning.effort; MaxTokens → max_output_tokens. Requests are sent with
// "store": false: the full conversation travels every call, so nothing needs
// keeping at OpenAI. StopReason is incomplete_details.reason when the
// response is incomplete, else the response status.
type responsesProvider struct {
	http *httpClient
}

type responsesRequest struct {
	Model           string              `json:"model"`
	Instructions    string              `json:"instructions,omitempty"`
	Input           []any               `json:"input"`
	Tools           []responsesTool     `json:"tools,omitempty"`
	ToolChoice      any                 `json:"tool_choice,omitempty"`
	Reasoning       *responsesReasoning `json:"reasoning,omitempty"`
	MaxOutputTokens int                 `json:"max_output_tokens,omitempty"`
	Store           bool                `json:"store"`
}

type responsesMessage struct {
	Type    string `json:"type"` // "message"
	Role    string `json:"role"`
	Content string `json:"content"`
}

type responsesFunctionCall struct {
	Type      string `json:"type"` // "function_call"
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type responsesFunctionOutput struct {
	Type   string `json:"type"` // "function_call_output"
	CallID string `json:"call_id"`
	Output string `json:"output"`
}

type responsesTool struct {
	Type        string          `json:"type"` // "function"
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      bool            `json:"strict"`
}

type responsesNamedChoice struct {
	Type string `json:"type"` // "function"
	Name string `json:"name"`
}

type responsesReasoning struct {
	Effort string `json:"effort"`
}

type responsesResponse struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Status string `json:"status"`
	Model  string `json:"model"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Output []struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Role    string `json:"role"`
		Content []struct {
			Type    string `json:"type"`
			Text    string `json:"text"`
			Refusal string `json:"refusal"`
		} `json:"content"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"output"`
	Usage struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

// Name returns the configured instance name.
func (p *responsesProvider) Name() string { return p.http.name }

// Complete sends one Responses API call.
func (p *responsesProvider) Complete(ctx context.Context, req Request) (*Response, error) {
	return exchange(ctx, p.http, req.Model, "/responses", func() (*responsesRequest, error) { return buildResponsesRequest(req) }, parseResponses)
}

func buildResponsesRequest(req Request) (*responsesRequest, error) {
	mode, err := toolChoiceMode(req)
	if err != nil {
		return nil, err
	}
	level, err := thinkingLevel(req)
	if err != nil {
		return nil, err
	}
	out := &responsesRequest{Model: req.Model, Instructions: req.System, MaxOutputTokens: req.MaxTokens, Input: []any{}}
	if level != ThinkingOff {
		out.Reasoning = &responsesReasoning{Effort: level}
	}
	if len(req.Tools) > 0 {
		for _, t := range req.Tools {
			out.Tools = append(out.Tools, responsesTool{Type: "function", Name: t.Name, Description: t.Description, Parameters: schemaOrEmpty(t.Schema)})
		}
		switch mode {
		case ToolChoiceAny:
			out.ToolChoice = "required"
		case ToolChoiceNone:
			out.ToolChoice = "none"
		case ToolChoiceTool:
			out.ToolChoice = responsesNamedChoice{Type: "function", Name: req.ToolChoice.Name}
		default:
			out.ToolChoice = "auto"
		}
	}
	for i, m := range req.Messages {
		switch m.Role {
		case RoleUser:
			out.Input = append(out.Input, responsesMessage{Type: "message", Role: "user", Content: m.Text})
		case RoleAssistant:
			if m.Text != "" {
				out.Input = append(out.Input, responsesMessage{Type: "message", Role: "assistant", Content: m.Text})
			}
			for _, c := range m.ToolCalls {
				out.Input = append(out.Input, responsesFunctionCall{Type: "function_call", CallID: c.ID, Name: c.Name, Arguments: string(argsOrEmpty(c.Args))})
			}
		case RoleTool:
			for _, r := range m.ToolResults {
				out.Input = append(out.Input, responsesFunctionOutput{Type: "function_call_output", CallID: r.CallID, Output: toolResultText(r)})
			}
			if m.Text != "" {
				out.Input = append(out.Input, responsesMessage{Type: "message", Role: "user", Content: m.Text})
			}
		default:
			return nil, fmt.Errorf("messages[%d]: unknown role %q", i, m.Role)
		}
	}
	return out, nil
}

func parseResponses(raw []byte) (*Response, error) {
	var r responsesResponse
	if err := decodeJSON(raw, &r); err != nil {
		return nil, err
	}
	if r.Object != "response" {
		return nil, fmt.Errorf("unexpected response: object %q, want \"response\"; body: %s", r.Object, excerpt(raw))
	}
	if r.Status == "failed" {
		msg := "response failed"
		if r.Error != nil {
			msg = fmt.Sprintf("response failed: %s: %s", r.Error.Code, r.Error.Message)
		}
		return nil, fmt.Errorf("%s", msg)
	}
	resp := &Response{
		StopReason: r.Status,
		Model:      r.Model,
		Usage:      Usage{InputTokens: r.Usage.InputTokens, OutputTokens: r.Usage.OutputTokens},
	}
	if r.IncompleteDetails != nil && r.IncompleteDetails.Reason != "" {
		resp.StopReason = r.IncompleteDetails.Reason
	}
	var texts []string
	for i, item := range r.Output {
		switch item.Type {
		case "message":
			for _, c := range item.Content {
				switch c.Type {
				case "output_text":
					texts = append(texts, c.Text)
				case "refusal":
					texts = append(texts, c.Refusal)
				}
			}
		case "function_call":
			if item.CallID == "" || item.Name == "" {
				return nil, fmt.Errorf("unexpected response: output[%d]: function_call without call_id or name", i)
			}
			resp.ToolCalls = append(resp.ToolCalls, ToolCall{ID: item.CallID, Name: item.Name, Args: argsOrEmpty(json.RawMessage(item.Arguments))})
		}
	}
	resp.Text = strings.Join(texts, "")
	return resp, nil
}
