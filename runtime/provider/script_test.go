package provider

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseScriptErrorsNameThePath(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty", ``, `empty file`},
		{"syntax", "{\n  \"conversations\": [\n    {\"turns\": [}\n  ]\n}", `line 3, column 16: invalid character '}'`},
		{"cut short", `{"conversations": [`, `line 1, column 19: unexpected end of JSON input`},
		{"array", `[]`, `top level: want a JSON object`},
		{"no conversations", `{"conversations": []}`, `conversations: at least one conversation is required`},
		{"unknown top key", `{"conversation": []}`, `unknown field "conversation"`},
		{"conversations not a list", `{"conversations": {}}`, `conversations: want an array, got object`},
		{"no turns", `{"conversations": [{"match": "x", "turns": []}]}`, `conversations[0].turns: at least one turn is required`},
		{"conversation not an object", `{"conversations": ["hi"]}`, `conversations[0]: want a JSON object, got a string`},
		{"tool call without name", `{"conversations": [{"turns": [{"text": "a"}]}, {"match": "m", "turns": [{"tool_calls": [{"args": {}}]}]}]}`,
			`conversations[1].turns[0].tool_calls[0]: name is required`},
		{"tool call not an object", `{"conversations": [{"turns": [{"tool_calls": ["x"]}]}]}`, `conversations[0].turns[0].tool_calls[0]: want a JSON object, got a string`},
		{"unknown turn key", `{"conversations": [{"turns": [{"txt": "a"}]}]}`, `conversations[0].turns[0]: unknown field "txt"`},
		{"unknown tool call key", `{"conversations": [{"turns": [{"tool_calls": [{"name": "a", "arguments": {}}]}]}]}`, `conversations[0].turns[0].tool_calls[0]: unknown field "arguments"`},
		{"delay type", `{"conversations": [{"turns": [{"text": "a", "delay_ms": "5"}]}]}`, `conversations[0].turns[0].delay_ms: want an integer, got string`},
		{"usage type", `{"conversations": [{"turns": [{"text": "a", "usage": {"input_tokens": true}}]}]}`, `conversations[0].turns[0].usage.input_tokens: want an integer, got bool`},
		{"negative delay", `{"conversations": [{"turns": [{"text": "a", "delay_ms": -1}]}]}`, `conversations[0].turns[0].delay_ms: must be 0 or more`},
		{"negative usage", `{"conversations": [{"turns": [{"text": "a", "usage": {"output_tokens": -3}}]}]}`, `conversations[0].turns[0].usage: token counts must be 0 or more`},
		{"empty turn", `{"conversations": [{"turns": [{"delay_ms": 5}]}]}`, `conversations[0].turns[0]: a turn needs text, tool_calls or error`},
		{"error and text", `{"conversations": [{"turns": [{"text": "a", "error": {"status": 500}}]}]}`, `conversations[0].turns[0]: error excludes text and tool_calls`},
		{"error status", `{"conversations": [{"turns": [{"error": {"status": 200}}]}]}`, `conversations[0].turns[0].error.status: must be an HTTP error status (400-599), got 200`},
		{"two fallbacks", `{"conversations": [{"turns": [{"text": "a"}]}, {"match": "x", "turns": [{"text": "b"}]}, {"turns": [{"text": "c"}]}]}`,
			`conversations[2]: a second conversation without match would never be used (conversations[0] is already the fallback)`},
		{"unknown placeholder in text", `{"conversations": [{"turns": [{"text": "do {{taks}}"}]}]}`, `conversations[0].turns[0].text: unknown placeholder {{taks}}`},
		{"unknown placeholder in args", `{"conversations": [{"turns": [{"tool_calls": [{"name": "a", "args": {"q": "{{result}}"}}]}]}]}`, `conversations[0].turns[0].tool_calls[0].args: unknown placeholder {{result}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseScript([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseScriptDefaults(t *testing.T) {
	s, err := ParseScript([]byte(`{"conversations": [{"turns": [
		{"tool_calls": [{"name": "a"}, {"name": "b", "args": [1, "x"]}]},
		{"error": {"status": 503}}
	]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	turns := s.Conversations[0].Turns
	if got := string(turns[0].ToolCalls[0].Args); got != "{}" {
		t.Errorf("absent args = %s, want {}", got)
	}
	if got := string(turns[0].ToolCalls[1].Args); got != `[1, "x"]` {
		t.Errorf("args = %s, want any JSON kept as written", got)
	}
	if got := turns[1].Error.Message; got != "Service Unavailable" {
		t.Errorf("default error message = %q", got)
	}
}

func TestLoadScript(t *testing.T) {
	s, err := LoadScript(filepath.Join(testdataDir, "demo.script.json"))
	if err != nil {
		t.Fatalf("the demo script does not load: %v", err)
	}
	if len(s.Conversations) != 3 || s.Model != "scripted-demo" {
		t.Errorf("demo script = %+v", s)
	}

	path := filepath.Join(t.TempDir(), "x.json")
	doc := `{"conversations": [{"turns": [{"text": "a"}]}, {"match": "m", "turns": [{"tool_calls": [{"args": {}}]}]}]}`
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadScript(path)
	if want := "script " + path + ": conversations[1].turns[0].tool_calls[0]: name is required"; err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	_, err = LoadScript(filepath.Join(t.TempDir(), "missing.json"))
	if err == nil || !strings.Contains(err.Error(), "missing.json: open") {
		t.Errorf("err = %v", err)
	}
}

func FuzzParseScript(f *testing.F) {
	demo, err := os.ReadFile(filepath.Join(testdataDir, "demo.script.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demo)
	f.Add([]byte(`{"conversations": [{"turns": [{"text": "{{task}}"}]}]}`))
	f.Add([]byte(`{"conversations": [{"turns": [{"tool_calls": [{"name": "a", "args": null}]}]}]}`))
	f.Add([]byte(`{"conversations": [{"turns": [{"error": {"status": 429}}]}]}`))
	f.Add([]byte(`{"conversations": [{"turns": [{"text": "a", "usage": {"input_tokens": 1e99}}]}]}`))
	f.Add([]byte(`{"conversations": null}`))
	f.Add([]byte("\xff{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScript(data)
		if err != nil {
			if s != nil {
				t.Fatal("a script and an error")
			}
			return
		}
		fallbacks := 0
		for _, c := range s.Conversations {
			if len(c.Turns) == 0 {
				t.Fatal("conversation without turns accepted")
			}
			if c.Match == "" {
				fallbacks++
			}
			for _, turn := range c.Turns {
				if turn.Error == nil && turn.Text == "" && len(turn.ToolCalls) == 0 {
					t.Fatal("empty turn accepted")
				}
				for _, tc := range turn.ToolCalls {
					if tc.Name == "" || len(tc.Args) == 0 {
						t.Fatal("tool call without name or args accepted")
					}
				}
			}
		}
		if len(s.Conversations) == 0 || fallbacks > 1 {
			t.Fatalf("invalid script accepted: %d conversations, %d fallbacks", len(s.Conversations), fallbacks)
		}
		// Whatever parsed must replay without panicking; the bound cuts a
		// long delay_ms short (an unbounded context hung the fuzzer).
		p := NewScripted("fuzz", s, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, _ = p.Complete(ctx, Request{Messages: []Message{{Role: RoleUser, Text: string(data)}}})
	})
}
