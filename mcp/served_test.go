package mcp

import (
	"context"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/provider"
)

// servedConfig has two scripted providers: "script" answers as the model
// requested, "liar" says another model answered (what a gateway that
// silently reroutes does).
const servedConfig = `
[providers.script]
kind = "scripted"
script = "unused.json"
[providers.liar]
kind = "scripted"
script = "unused.json"
[[models]]
id = "script/m"
provider = "script"
[[models]]
id = "liar/big"
provider = "liar"
name = "big-model"
[agents.defaults]
model = "script/m"
[agents.defaults.subagents]
max_spawn_depth = 2
`

func servedFixture(t *testing.T) *fixture {
	t.Helper()
	honest, err := provider.ParseScript([]byte(`{"conversations": [
 {"match": "delegate", "turns": [
   {"tool_calls": [{"name": "spawn_agent", "args": {"task": "grandchild work", "model": "liar/big"}}]},
   {"text": "child saw: {{last_tool_result}}"}]},
 {"turns": [{"text": "honest answer"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	liar, err := provider.ParseScript([]byte(`{"model": "small-model-q4", "conversations": [{"turns": [{"text": "cheap answer"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return newFixtureFull(t, servedConfig, "2025-11-25", map[string]provider.Provider{
		"script": provider.NewScripted("script", honest, nil), "liar": provider.NewScripted("liar", liar, nil)})
}

type servedRun struct {
	TaskID       string `json:"task_id"`
	Status       string `json:"status"`
	Model        string `json:"model"`
	ModelServed  string `json:"modelServed"`
	ModelWarning string `json:"modelWarning"`
	Announce     string `json:"announce"`
	ChildKey     string `json:"childSessionKey"`
}

// The model a provider says answered is recorded per response, shown
// beside the model requested in spawn_status, the announce stats line and
// session_status, and a difference is warned about.
func TestModelServedThroughMCP(t *testing.T) {
	f := servedFixture(t)
	for _, tc := range []struct {
		model, served, warn string
	}{
		{"script/m", "m", ""},
		{"liar/big", "small-model-q4", `provider says "small-model-q4" answered`},
	} {
		sp := f.spawn(map[string]any{"task": "plain work", "model": tc.model})
		if sp.Status != "accepted" {
			t.Fatalf("spawn %s: %+v", tc.model, sp)
		}
		if r := f.result(sp.RunID, 30); r.Status != "ok" {
			t.Fatalf("run %s: %+v", tc.model, r)
		}
		var st servedRun
		res := f.call("spawn_status", map[string]any{"task_id": sp.RunID}, &st)
		if res.IsError {
			t.Fatal(text(res))
		}
		if st.Model != tc.model || st.ModelServed != tc.served {
			t.Errorf("%s: spawn_status model %q served %q, want served %q", tc.model, st.Model, st.ModelServed, tc.served)
		}
		if (tc.warn == "") != (st.ModelWarning == "") || !strings.Contains(st.ModelWarning, tc.warn) {
			t.Errorf("%s: modelWarning %q, want %q", tc.model, st.ModelWarning, tc.warn)
		}
		if want := "• model " + tc.model + " (served " + tc.served + ")"; !strings.Contains(st.Announce, want) {
			t.Errorf("%s: announce stats line lacks %q:\n%s", tc.model, want, st.Announce)
		}
		if tc.warn != "" && !strings.Contains(st.Announce, "Warning: ") {
			t.Errorf("%s: announce does not warn:\n%s", tc.model, st.Announce)
		}
		var ss struct {
			Model        string `json:"model"`
			ModelServed  string `json:"modelServed"`
			ModelWarning string `json:"modelWarning"`
		}
		if res := f.call("session_status", map[string]any{"key": sp.ChildSessionKey}, &ss); res.IsError {
			t.Fatal(text(res))
		}
		if ss.Model != tc.model || ss.ModelServed != tc.served || (tc.warn == "") != (ss.ModelWarning == "") {
			t.Errorf("%s: session_status %+v", tc.model, ss)
		}
		// Each stored response carries the model the provider named.
		msgs, err := f.st.Transcript(context.Background(), sp.ChildSessionKey)
		if err != nil {
			t.Fatal(err)
		}
		last := msgs[len(msgs)-1]
		if last.Role != "assistant" || last.Content.Model != tc.served {
			t.Errorf("%s: last message %s model %q, want %q", tc.model, last.Role, last.Content.Model, tc.served)
		}
	}
}

// A child agent that spawns a grandchild on a rerouted model reads the
// warning in its own spawn_agent result.
func TestModelServedFromChildAgent(t *testing.T) {
	f := servedFixture(t)
	sp := f.spawn(map[string]any{"task": "delegate this"})
	r := f.result(sp.RunID, 30)
	if r.Status != "ok" {
		t.Fatalf("child run: %+v", r)
	}
	got := toolResultOf(t, f, sp.RunID)
	if !strings.Contains(got, "Warning: model liar/big was requested") || !strings.Contains(got, "small-model-q4") {
		t.Fatalf("the child's spawn_agent result does not warn about the served model: %s", got)
	}
	if !strings.Contains(r.Text, "small-model-q4") {
		t.Errorf("the child's answer does not carry the warning: %s", r.Text)
	}
}
