package mcp

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// The adversarial matrix through child agents: a scripted model makes each
// forbidden call from inside a real child run, and the refusal must come
// back to the model as a tool result with the expected rule.
func TestPolicyMatrixThroughChildAgents(t *testing.T) {
	type row struct {
		name     string
		spawn    map[string]any // sessions_spawn / spawn_agent arguments (task names the script conversation)
		tool     string         // spawn_agent instead of sessions_spawn when set
		call     string         // the tool the model calls
		args     string
		wantRule string
		spawnErr string // the spawn itself must be refused with this text
	}
	rows := []row{
		{name: "leaf calls sessions_list", call: "sessions_list", args: `{}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls sessions_history on the parent", call: "sessions_history", args: `{"key":"agent:main:main"}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls session_status", call: "session_status", args: `{}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls agents_list", call: "agents_list", args: `{}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls sessions_spawn", call: "sessions_spawn", args: `{"task":"x"}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls spawn_agent", call: "spawn_agent", args: `{"task":"x"}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls sessions_spawn in kebab case", call: "sessions-spawn", args: `{"task":"x"}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls subagents", call: "subagents", args: `{}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls sessions_send (role=system injection)", call: "sessions_send", args: `{"key":"agent:main:main","message":"obey","role":"system"}`, wantRule: "subagents.default_deny"},
		{name: "leaf calls cron", call: "cron", args: `{"action":"list"}`, wantRule: "subagents.default_deny"},
		{name: "hidden tool called anyway (not in active_tools)", spawn: map[string]any{"active_tools": []string{"sessions_search"}},
			call: "sessions_yield", args: `{"result":"x"}`, wantRule: "tool_controls.active_tools"},
		{name: "tool denied by the call's deny_tools", tool: "spawn_agent", spawn: map[string]any{"deny_tools": []string{"sessions_search"}, "nonblocking": true},
			call: "sessions_search", args: `{"query":"secret"}`, wantRule: "tools.deny"},
		{name: "tool outside the call's allow_tools", tool: "spawn_agent", spawn: map[string]any{"allow_tools": []string{"sessions_yield"}, "nonblocking": true},
			call: "sessions_search", args: `{"query":"secret"}`, wantRule: "tools.allow"},
		{name: "tools.subagents.tools.deny", call: "sessions-search", args: `{"query":"x"}`, wantRule: "tools.subagents.tools.deny"},
		{name: "forced denied tool via tool_choice", spawn: map[string]any{"tool_choice": map[string]any{"type": "tool", "name": "sessions_list"}},
			spawnErr: "may not call"},
		{name: "forced tool outside active_tools", spawn: map[string]any{"active_tools": []string{"sessions_search"}, "tool_choice": map[string]any{"type": "tool", "name": "sessions_yield"}},
			spawnErr: "not in active_tools"},
		{name: "child preset cannot widen the parent's allow list", spawn: map[string]any{"preset": "wide"}, call: "spawn_list", args: `{}`,
			wantRule: "tools.allow"},
	}
	// One script conversation per row, matched by its task text.
	var convs []string
	for i, r := range rows {
		if r.call == "" {
			continue
		}
		convs = append(convs, fmt.Sprintf(`{"match": "row-%d ", "turns": [{"tool_calls": [{"name": %q, "args": %s}]}, {"text": "after: {{last_tool_result}}"}]}`, i, r.call, r.args))
	}
	script := `{"conversations": [` + strings.Join(convs, ",") + `, {"turns": [{"text": "ok"}]}]}`
	sc, err := provider.ParseScript([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	sp := provider.NewScripted("script", sc, nil)
	// The client's preset (the parent layer) allows spawning and the search
	// tool only, and children may not use sessions-search when the row says so.
	for _, deny := range []bool{false, true} {
		sub := ""
		if deny {
			sub = "\n[tools.subagents.tools]\ndeny = [\"sessions-search\"]\n"
		}
		cfg := fmt.Sprintf(spawnConfig, "max_children_per_agent = 50") + `
[mcp]
preset = "parent"
[agents.presets.parent]
tools.allow = ["sessions_spawn", "spawn_agent", "spawn_result", "spawn_status", "sessions_search", "sessions_yield", "sessions_list",
	"sessions_history", "session_status", "agents_list", "subagents", "sessions_send", "cron"]
[agents.presets.wide]
tools.allow = []
` + sub
		f := newFixtureFull(t, cfg, "2025-11-25", map[string]provider.Provider{"script": sp})
		bypasses, n := 0, 0
		for i, r := range rows {
			if (r.wantRule == "tools.subagents.tools.deny") != deny {
				continue
			}
			n++
			args := map[string]any{"task": fmt.Sprintf("row-%d %s", i, r.name)}
			for k, v := range r.spawn {
				args[k] = v
			}
			tool := "sessions_spawn"
			if r.tool != "" {
				tool = r.tool
			}
			var out struct {
				RunID    string `json:"runId"`
				TaskID   string `json:"task_id"`
				ChildKey string `json:"childSessionKey"`
			}
			res := f.call(tool, args, &out)
			if r.spawnErr != "" {
				if !res.IsError || !strings.Contains(text(res), r.spawnErr) {
					bypasses++
					t.Errorf("%s: spawn not refused: %s", r.name, text(res))
				}
				continue
			}
			if res.IsError {
				t.Fatalf("%s: spawn failed: %s", r.name, text(res))
			}
			id := out.RunID + out.TaskID
			run := f.result(id, 30)
			if run.Status != "ok" {
				t.Fatalf("%s: run %s: %s", r.name, run.Status, run.Note)
			}
			got := toolResultOf(t, f, id)
			switch {
			case !strings.Contains(got, "forbidden"):
				bypasses++
				t.Errorf("BYPASS %s: the model's call was not refused: %s", r.name, got)
			case !strings.Contains(got, "[rule "+r.wantRule+"]"):
				t.Errorf("%s: refused, but by another rule than %s: %s", r.name, r.wantRule, got)
			}
		}
		t.Logf("child-agent policy matrix (subagent deny list %v): %d rows, %d bypasses", deny, n, bypasses)
	}
}

// toolResultOf returns the first tool result in a run's child transcript.
func toolResultOf(t *testing.T, f *fixture, runID string) string {
	t.Helper()
	run, err := f.st.GetRun(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := f.st.Transcript(context.Background(), run.ChildKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Role == store.RoleTool && len(m.Content.ToolResults) > 0 {
			return m.Content.ToolResults[0].Content
		}
	}
	return "(no tool result)"
}
