package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
)

// Script is the parsed form of a scripted provider's file: canned model
// turns replayed by the scripted provider, for tests and demos.
//
// The file is JSON (unknown keys are errors):
//
//	{
//	  "description": "optional free text",
//	  "model": "scripted-demo",            // reported as Response.Model; default: the requested model
//	  "conversations": [
//	    {
//	      "name": "weather",               // optional label used in errors
//	      "match": "weather",              // substring of the task (the first user message, unfenced); omit for the fallback
//	      "turns": [
//	        {"text": "Looking it up.",
//	         "tool_calls": [{"name": "get_weather", "args": {"city": "{{task}}"}}],
//	         "usage": {"input_tokens": 120, "output_tokens": 18},
//	         "delay_ms": 50},
//	        {"text": "Done: {{last_tool_result}}"},
//	        {"error": {"status": 529, "message": "overloaded"}}
//	      ]
//	    }
//	  ]
//	}
//
// Selection is stateless, so one script serves any number of concurrent
// sessions: the conversation is the first whose match is a (case-sensitive)
// substring of the request's task (TaskText), else the one without match
// (at most one may omit it). The turn is the number of assistant messages
// already in the request: none → turns[0], one → turns[1], and so on. Past
// the last turn the last turn repeats if it calls no tools; otherwise the
// call fails with "script exhausted".
//
// A turn has text and/or tool_calls, or else an error. Tool call ids are
// "call_<turn>_<i>"; args is any JSON (default {}). In text and in args
// strings, {{task}} becomes the task (TaskText of the first user message) and {{last_tool_result}}
// the content of the most recent tool result. delay_ms waits before
// answering (cut short by cancellation). error {status, message} is returned
// as an *Error, retryable for 408/429/5xx/529 as with the HTTP providers;
// the scripted provider never retries itself. usage defaults to zero and
// stop_reason to "tool_use" or "end_turn".
type Script struct {
	Description   string         `json:"description,omitempty"` // free text, ignored
	Model         string         `json:"model,omitempty"`       // Response.Model; default: the requested model
	Conversations []Conversation `json:"conversations"`         // at least one
}

// Conversation is one scripted exchange, chosen by Match.
type Conversation struct {
	Name  string `json:"name,omitempty"`  // label used in errors
	Match string `json:"match,omitempty"` // empty: the fallback conversation
	Turns []Turn `json:"turns"`           // at least one
}

// Turn is one canned model answer.
type Turn struct {
	Text       string           `json:"text,omitempty"`        // assistant text; placeholders expanded
	ToolCalls  []ScriptToolCall `json:"tool_calls,omitempty"`  // ids "call_<turn>_<i>"
	Usage      Usage            `json:"usage"`                 // reported as is; default zero
	DelayMS    int              `json:"delay_ms,omitempty"`    // wait before answering, honouring ctx
	Error      *TurnError       `json:"error,omitempty"`       // fail instead of answering
	StopReason string           `json:"stop_reason,omitempty"` // default tool_use or end_turn
}

// ScriptToolCall is a tool call a Turn makes; its id is generated.
type ScriptToolCall struct {
	Name string          `json:"name"`           // required
	Args json.RawMessage `json:"args,omitempty"` // any JSON; default {}
}

// TurnError is a failure a Turn returns instead of an answer.
type TurnError struct {
	Status  int    `json:"status"`            // 400-599; 408/429/5xx/529 are retryable
	Message string `json:"message,omitempty"` // default: the status text
}

// Placeholders replaced in a turn's text and tool call args.
const (
	PlaceholderTask           = "{{task}}"
	PlaceholderLastToolResult = "{{last_tool_result}}"
)

var placeholderRE = regexp.MustCompile(`\{\{[^{}]*\}\}`)

// LoadScript reads and parses a script file. Errors name the file, the JSON
// path and the fault: "script x.json: conversations[1].turns[0].tool_calls[0]:
// name is required".
func LoadScript(path string) (*Script, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", path, err)
	}
	s, err := ParseScript(data)
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", path, err)
	}
	return s, nil
}

// ParseScript parses and validates a script document (see Script). Errors
// carry the JSON path of the fault, or the line and column of a syntax
// error. It never panics, whatever the input.
func ParseScript(data []byte) (*Script, error) {
	if err := syntaxCheck(data); err != nil {
		return nil, err
	}
	var top struct {
		Description   string            `json:"description"`
		Model         string            `json:"model"`
		Conversations []json.RawMessage `json:"conversations"`
	}
	if err := decodeStrict(data, &top, ""); err != nil {
		return nil, err
	}
	if len(top.Conversations) == 0 {
		return nil, errors.New("conversations: at least one conversation is required")
	}
	s := &Script{Description: top.Description, Model: top.Model}
	fallback := -1
	for ci, rawConv := range top.Conversations {
		cpath := fmt.Sprintf("conversations[%d]", ci)
		conv, err := parseConversation(rawConv, cpath)
		if err != nil {
			return nil, err
		}
		if conv.Match == "" {
			if fallback >= 0 {
				return nil, fmt.Errorf("%s: a second conversation without match would never be used (conversations[%d] is already the fallback); give it a match", cpath, fallback)
			}
			fallback = ci
		}
		s.Conversations = append(s.Conversations, conv)
	}
	return s, nil
}

func parseConversation(raw json.RawMessage, path string) (Conversation, error) {
	var rc struct {
		Name  string            `json:"name"`
		Match string            `json:"match"`
		Turns []json.RawMessage `json:"turns"`
	}
	if err := decodeStrict(raw, &rc, path); err != nil {
		return Conversation{}, err
	}
	if len(rc.Turns) == 0 {
		return Conversation{}, fmt.Errorf("%s.turns: at least one turn is required", path)
	}
	conv := Conversation{Name: rc.Name, Match: rc.Match}
	for ti, rawTurn := range rc.Turns {
		t, err := parseTurn(rawTurn, fmt.Sprintf("%s.turns[%d]", path, ti))
		if err != nil {
			return Conversation{}, err
		}
		conv.Turns = append(conv.Turns, t)
	}
	return conv, nil
}

func parseTurn(raw json.RawMessage, path string) (Turn, error) {
	var rt struct {
		Text       string            `json:"text"`
		ToolCalls  []json.RawMessage `json:"tool_calls"`
		Usage      Usage             `json:"usage"`
		DelayMS    int               `json:"delay_ms"`
		Error      *TurnError        `json:"error"`
		StopReason string            `json:"stop_reason"`
	}
	if err := decodeStrict(raw, &rt, path); err != nil {
		return Turn{}, err
	}
	t := Turn{Text: rt.Text, Usage: rt.Usage, DelayMS: rt.DelayMS, Error: rt.Error, StopReason: rt.StopReason}
	switch {
	case rt.DelayMS < 0:
		return Turn{}, fmt.Errorf("%s.delay_ms: must be 0 or more, got %d", path, rt.DelayMS)
	case rt.Usage.InputTokens < 0 || rt.Usage.OutputTokens < 0:
		return Turn{}, fmt.Errorf("%s.usage: token counts must be 0 or more", path)
	case rt.Error != nil && (rt.Text != "" || len(rt.ToolCalls) > 0):
		return Turn{}, fmt.Errorf("%s: error excludes text and tool_calls; split them into two turns", path)
	case rt.Error == nil && rt.Text == "" && len(rt.ToolCalls) == 0:
		return Turn{}, fmt.Errorf("%s: a turn needs text, tool_calls or error", path)
	}
	if e := rt.Error; e != nil {
		if e.Status < 400 || e.Status > 599 {
			return Turn{}, fmt.Errorf("%s.error.status: must be an HTTP error status (400-599), got %d", path, e.Status)
		}
		if e.Message == "" {
			msg := http.StatusText(e.Status)
			if msg == "" {
				msg = fmt.Sprintf("HTTP %d", e.Status) // e.g. 529, which net/http does not name
			}
			t.Error = &TurnError{Status: e.Status, Message: msg}
		}
	}
	if err := checkPlaceholders(rt.Text, path+".text"); err != nil {
		return Turn{}, err
	}
	for i, rawCall := range rt.ToolCalls {
		cpath := fmt.Sprintf("%s.tool_calls[%d]", path, i)
		var c ScriptToolCall
		if err := decodeStrict(rawCall, &c, cpath); err != nil {
			return Turn{}, err
		}
		if c.Name == "" {
			return Turn{}, fmt.Errorf("%s: name is required", cpath)
		}
		c.Args = argsOrEmpty(c.Args)
		if err := checkPlaceholders(string(c.Args), cpath+".args"); err != nil {
			return Turn{}, err
		}
		t.ToolCalls = append(t.ToolCalls, c)
	}
	return t, nil
}

// checkPlaceholders rejects {{...}} other than the known placeholders, so a
// typo fails at load instead of leaking into a demo.
func checkPlaceholders(s, path string) error {
	for _, p := range placeholderRE.FindAllString(s, -1) {
		if p != PlaceholderTask && p != PlaceholderLastToolResult {
			return fmt.Errorf("%s: unknown placeholder %s (known: %s, %s)", path, p, PlaceholderTask, PlaceholderLastToolResult)
		}
	}
	return nil
}

// syntaxCheck reports a JSON syntax error with its line and column.
func syntaxCheck(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("empty file: want a JSON object with \"conversations\"")
	}
	var v any
	err := json.Unmarshal(data, &v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line, col := lineCol(data, syn.Offset)
		return fmt.Errorf("line %d, column %d: %s", line, col, strings.TrimPrefix(syn.Error(), "json: "))
	}
	if err != nil {
		return fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, ok := v.(map[string]any); !ok {
		return errors.New("top level: want a JSON object with \"conversations\"")
	}
	return nil
}

func lineCol(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return line, col
}

// decodeStrict decodes raw into v, refusing unknown keys, and puts path in
// front of any error.
func decodeStrict(raw json.RawMessage, v any, path string) error {
	at := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		if path == "" {
			return errors.New(msg)
		}
		return fmt.Errorf("%s: %s", path, msg)
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return at("want a JSON object, got %s", jsonKind(t))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		field := typ.Field
		if path != "" && field != "" {
			field = "." + field
		}
		return fmt.Errorf("%s%s: want %s, got %s", path, field, goKindName(typ.Type), typ.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field") {
		return at("%s (check the spelling; see SCRIPTED.md)", msg)
	}
	return at("%s", msg)
}

func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func goKindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	case reflect.Bool:
		return "a boolean"
	default:
		return t.String()
	}
}
