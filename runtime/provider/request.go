package provider

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Tool choice modes of ToolChoice.Mode.
const (
	ToolChoiceAuto = "auto" // the model decides (also the empty Mode)
	ToolChoiceAny  = "any"  // the model must call some tool
	ToolChoiceNone = "none" // the model must not call tools
	ToolChoiceTool = "tool" // the model must call the tool named in Name
)

// Thinking levels of Request.Thinking.
const (
	ThinkingOff    = "off" // also the empty string
	ThinkingLow    = "low"
	ThinkingMedium = "medium"
	ThinkingHigh   = "high"
)

// toolChoiceMode validates req.ToolChoice against req.Tools and returns the
// normalised mode ("auto" for empty). It is checked before anything is sent.
func toolChoiceMode(req Request) (string, error) {
	tc := req.ToolChoice
	mode := tc.Mode
	if mode == "" {
		mode = ToolChoiceAuto
	}
	switch mode {
	case ToolChoiceAuto, ToolChoiceAny, ToolChoiceNone:
		return mode, nil
	case ToolChoiceTool:
		if tc.Name == "" {
			return "", fmt.Errorf("tool_choice: mode \"tool\" needs a tool name")
		}
		if len(req.Tools) == 0 {
			return mode, nil // no tools: the choice is dropped with them
		}
		for _, t := range req.Tools {
			if t.Name == tc.Name {
				return mode, nil
			}
		}
		return "", fmt.Errorf("tool_choice: forced tool %q is not among the %d tools offered", tc.Name, len(req.Tools))
	default:
		return "", fmt.Errorf("tool_choice: unknown mode %q (valid: auto, any, none, tool)", tc.Mode)
	}
}

// thinkingLevel validates and normalises req.Thinking ("" → "off").
func thinkingLevel(req Request) (string, error) {
	switch req.Thinking {
	case "", ThinkingOff:
		return ThinkingOff, nil
	case ThinkingLow, ThinkingMedium, ThinkingHigh:
		return req.Thinking, nil
	default:
		return "", fmt.Errorf("thinking: unknown level %q (valid: off, low, medium, high)", req.Thinking)
	}
}

// argsOrEmpty returns a tool call's arguments as valid JSON: empty or null
// arguments become {}, and bytes that are not JSON are passed on as a JSON
// string so the message stays serialisable and the tool layer can report
// the bad arguments to the model.
func argsOrEmpty(raw json.RawMessage) json.RawMessage {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return json.RawMessage("{}")
	}
	if !json.Valid([]byte(s)) {
		b, _ := json.Marshal(s)
		return b
	}
	return json.RawMessage(s)
}

// schemaOrEmpty returns a tool's JSON schema, or an empty object schema.
func schemaOrEmpty(raw json.RawMessage) json.RawMessage {
	if len(strings.TrimSpace(string(raw))) == 0 || string(raw) == "null" {
		return json.RawMessage(`{"type":"object","properties":{}}`)
	}
	return raw
}

// hasToolTurns reports whether the conversation holds tool calls or results.
func hasToolTurns(msgs []Message) bool {
	for _, m := range msgs {
		if len(m.ToolCalls) > 0 || len(m.ToolResults) > 0 {
			return true
		}
	}
	return false
}

// flattenToolTurns rewrites tool calls and tool results as plain text, for
// an API that refuses tool blocks when no tools are declared (Anthropic) or
// a sampling client without tool support. The meaning survives; the
// structure does not.
func flattenToolTurns(msgs []Message) []Message {
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		switch {
		case len(m.ToolCalls) > 0:
			var b strings.Builder
			b.WriteString(m.Text)
			for _, c := range m.ToolCalls {
				if b.Len() > 0 {
					b.WriteString("\n")
				}
				fmt.Fprintf(&b, "[called tool %s with %s]", c.Name, argsOrEmpty(c.Args))
			}
			out = append(out, Message{Role: RoleAssistant, Text: b.String()})
		case len(m.ToolResults) > 0:
			var b strings.Builder
			for i, r := range m.ToolResults {
				if i > 0 {
					b.WriteString("\n")
				}
				kind := "result"
				if r.IsError {
					kind = "error"
				}
				fmt.Fprintf(&b, "[tool %s %s]\n%s", r.Name, kind, r.Content)
			}
			if m.Text != "" {
				b.WriteString("\n" + m.Text)
			}
			out = append(out, Message{Role: RoleUser, Text: b.String()})
		default:
			out = append(out, Message{Role: m.Role, Text: m.Text, Reasoning: m.Reasoning})
		}
	}
	return out
}

// toolResultText is a tool result's content for APIs without an error flag.
func toolResultText(r ToolResult) string {
	if r.IsError && !strings.HasPrefix(strings.ToLower(r.Content), "error") {
		return "Error: " + r.Content
	}
	return r.Content
}
