package mcp

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

type explainOut struct {
	Caller    string `json:"caller"`
	Decisions []struct {
		Subject   string `json:"subject"`
		Effect    string `json:"effect"`
		Rule      string `json:"rule"`
		ConfigKey string `json:"configKey"`
		Message   string `json:"message"`
	} `json:"decisions"`
	AllowedTools []string `json:"allowedTools"`
	Spawn        *struct {
		Effect         string   `json:"effect"`
		Rule           string   `json:"rule"`
		ConfigKey      string   `json:"configKey"`
		Message        string   `json:"message"`
		AgentID        string   `json:"agentId"`
		Model          string   `json:"model"`
		Thinking       string   `json:"thinking"`
		Role           string   `json:"role"`
		Layers         []string `json:"layers"`
		Tools          []string `json:"tools"`
		ToolChoice     string   `json:"toolChoice"`
		TimeoutSeconds int      `json:"timeoutSeconds"`
	} `json:"spawn"`
}

const explainConfig = `
[mcp]
preset = "parent"
[agents.presets.parent]
tools.allow = ["sessions_list", "sessions_history", "sessions_send", "session_status", "sessions_spawn", "spawn_agent",
	"spawn_status", "policy_explain", "sessions_fork", "agents_list", "task_list", "sessions_yield"]
[agents.presets.parent.sessions]
key_prefix = "agent:main:"
can_send = false
[agents.presets.reader]
tools.allow = ["sessions_list", "task_list", "sessions_yield"]
timeout_secs = 90
[agents.presets.reader.tool_controls]
tool_choice = { type = "tool", name = "task_list" }
`

// policy_explain answers with the decision a real call gets: for every
// (tool, key) pair its effect and rule equal the real call's outcome.
func TestPolicyExplainMatchesRealCalls(t *testing.T) {
	f, _ := newSpawnFixture(t, "max_spawn_depth = 2\n"+strings.TrimPrefix(explainConfig, "\n"))
	f.session("agent:main:proj", "", "", 0)
	f.session("agent:other:main", "", "", 0)
	calls := []struct {
		tool string
		args map[string]any
	}{
		{"sessions_list", map[string]any{}},
		{"sessions_search", map[string]any{"query": "x"}},
		{"cron", map[string]any{"action": "list"}},
		{"sessions_history", map[string]any{"key": "agent:main:proj"}},
		{"sessions_history", map[string]any{"key": "agent:other:main"}},
		{"sessions_history", map[string]any{"key": "agent:main:main"}},
		{"sessions_send", map[string]any{"key": "agent:main:proj", "message": "hi", "timeoutSeconds": 0}},
		{"session_status", map[string]any{"key": "agent:other:main"}},
		{"sessions_fork", map[string]any{"key": "agent:other:main"}},
		{"task_list", map[string]any{"action": "list_lists"}},
	}
	for _, c := range calls {
		var ref struct {
			Rule string `json:"rule"`
		}
		res := f.call(c.tool, c.args, &ref)
		q := map[string]any{"tool": c.tool}
		if k, ok := c.args["key"]; ok {
			q["key"] = k
		}
		var ex explainOut
		if r := f.call("policy_explain", q, &ex); r.IsError || len(ex.Decisions) != 1 {
			t.Fatalf("explain %v: %s", q, text(r))
		}
		d := ex.Decisions[0]
		refused := res.IsError && strings.HasPrefix(text(res), "forbidden")
		switch {
		case refused && (d.Effect != "deny" || d.Rule != ref.Rule):
			t.Errorf("%s %v: the call was refused by %s, explain says %s %s", c.tool, c.args, ref.Rule, d.Effect, d.Rule)
		case !refused && d.Effect == "deny":
			t.Errorf("%s %v: the call went through, explain says deny by %s: %s", c.tool, c.args, d.Rule, d.Message)
		}
		if d.Effect == "deny" && d.ConfigKey == "" && d.Rule != "subagents.default_deny" {
			t.Errorf("%s: a denial without the config key that would change it: %+v", c.tool, d)
		}
	}
	// No tool: every tool, the allowed ones listed, each denial with its rule.
	var all explainOut
	f.call("policy_explain", map[string]any{}, &all)
	if !contains(all.AllowedTools, "sessions_list") || contains(all.AllowedTools, "cron") || len(all.Decisions) == 0 {
		t.Errorf("explain all: allowed %v", all.AllowedTools)
	}
	// A key alone: may it be read, may it be sent to.
	var key explainOut
	f.call("policy_explain", map[string]any{"key": "agent:main:proj"}, &key)
	if len(key.Decisions) != 2 || key.Decisions[0].Effect != "allow" || key.Decisions[1].Rule != "sessions.can_send" ||
		key.Decisions[1].ConfigKey != "agents.presets.parent.sessions.can_send" {
		t.Errorf("explain key: %+v", key.Decisions)
	}
	// An added preset narrows.
	var narrowed explainOut
	f.call("policy_explain", map[string]any{"tool": "session_status", "preset": "reader"}, &narrowed)
	if narrowed.Decisions[0].Effect != "deny" || narrowed.Decisions[0].ConfigKey != "agents.presets.reader.tools.allow" {
		t.Errorf("explain with preset reader: %+v", narrowed.Decisions)
	}
	f.wantError(f.call("policy_explain", map[string]any{"preset": "ghost"}, nil), "preset \"ghost\" is not defined")
	f.wantError(f.call("policy_explain", map[string]any{"tool": "nope"}, nil), "unknown tool")
}

// A spawn explained: the child's tools, model, thinking, role, layers,
// tool_choice and timeout, as PrepareChild resolves them; refusals carry
// the same rule a real spawn gets.
func TestPolicyExplainSpawn(t *testing.T) {
	f, _ := newSpawnFixture(t, "max_children_per_agent = 1\n"+strings.TrimPrefix(explainConfig, "\n"))
	var ex explainOut
	if r := f.call("policy_explain", map[string]any{"spawn": map[string]any{"preset": "reader", "model": "script/cheap", "thinking": "low"}}, &ex); r.IsError {
		t.Fatal(text(r))
	}
	s := ex.Spawn
	if s == nil || s.Effect != "ask" || s.Model != "script/cheap" || s.Thinking != "low" || s.Role != "leaf" || s.TimeoutSeconds != 90 ||
		s.ToolChoice != "tool:task_list" || strings.Join(s.Tools, ",") != "sessions_yield,task_list" {
		t.Fatalf("spawn explained: %+v", s)
	}
	if len(s.Layers) != 2 || !strings.HasPrefix(s.Layers[0], "parent") || !strings.HasPrefix(s.Layers[1], "reader") {
		t.Errorf("child layers %v", s.Layers)
	}
	// spawn_agent's deny_tools narrow the child's tools.
	f.call("policy_explain", map[string]any{"spawn": map[string]any{"tool": "spawn_agent", "deny_tools": []string{"spawn_status"}}}, &ex)
	if ex.Spawn.Effect == "deny" || contains(ex.Spawn.Tools, "spawn_status") || contains(ex.Spawn.Tools, "sessions_list") {
		t.Errorf("spawn_agent child tools %v (a leaf, spawn_status denied by the call)", ex.Spawn.Tools)
	}
	// Refusals: the same rule as the real spawn.
	for _, c := range []struct {
		args map[string]any
		rule string
	}{
		{map[string]any{"agentId": "stranger"}, "subagents.allow_agents"},
		{map[string]any{"thinking": "extreme"}, "invalid"},
	} {
		f.call("policy_explain", map[string]any{"spawn": c.args}, &ex)
		if ex.Spawn.Effect != "deny" || ex.Spawn.Rule != c.rule {
			t.Errorf("%v: explained %s %s, want deny %s", c.args, ex.Spawn.Effect, ex.Spawn.Rule, c.rule)
		}
	}
	var ref struct {
		Rule string `json:"rule"`
	}
	f.call("sessions_spawn", map[string]any{"task": "x", "agentId": "stranger"}, &ref)
	if ref.Rule != "subagents.allow_agents" {
		t.Errorf("real spawn refused by %q", ref.Rule)
	}
	// At max_children_per_agent the explain says so, as the real spawn does.
	sp := f.spawn(map[string]any{"task": "slow one"})
	f.call("policy_explain", map[string]any{"spawn": map[string]any{}}, &ex)
	f.call("sessions_spawn", map[string]any{"task": "another"}, &ref)
	if ex.Spawn.Rule != "subagents.max_children_per_agent" || ref.Rule != ex.Spawn.Rule {
		t.Errorf("at the children limit: explain %q, real %q", ex.Spawn.Rule, ref.Rule)
	}
	f.call("cancel_spawn", map[string]any{"task_id": sp.RunID}, nil)
}

// From a child agent: a leaf asks policy_explain about sessions_list, then
// calls it; both name the same rule.
func TestPolicyExplainFromChildAgent(t *testing.T) {
	sc, err := provider.ParseScript([]byte(`{"conversations": [
 {"match": "explain-me", "turns": [
   {"tool_calls": [{"name": "policy_explain", "args": {"tool": "sessions_list"}}]},
   {"tool_calls": [{"name": "sessions_list", "args": {}}]},
   {"text": "done"}]},
 {"turns": [{"text": "default answer"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, ""), "2025-11-25", map[string]provider.Provider{"script": provider.NewScripted("script", sc, nil)})
	sp := f.spawn(map[string]any{"task": "explain-me please"})
	if r := f.result(sp.RunID, 30); r.Status != "ok" {
		t.Fatalf("child: %+v", r)
	}
	var results []string
	for _, m := range transcriptOf(t, f, sp.ChildSessionKey) {
		for _, tr := range m.Content.ToolResults {
			results = append(results, tr.Content)
		}
	}
	if len(results) != 2 {
		t.Fatalf("tool results %v", results)
	}
	if !strings.Contains(results[0], "tool sessions_list: deny [rule subagents.default_deny]") || !strings.Contains(results[0], "depth 1") {
		t.Errorf("explain from the child: %s", results[0])
	}
	if !strings.Contains(results[1], "[rule subagents.default_deny]") {
		t.Errorf("the real call: %s", results[1])
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func transcriptOf(t *testing.T, f *fixture, key string) []store.Message {
	t.Helper()
	msgs, err := f.st.Transcript(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
