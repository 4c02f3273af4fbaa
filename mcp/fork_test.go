package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

type forkOut struct {
	Key          string `json:"key"`
	ForkedFrom   string `json:"forkedFrom"`
	AtSeq        int64  `json:"atSeq"`
	MessageCount int    `json:"messageCount"`
}

// rawRows reads a session's messages as stored, column for column.
func rawRows(t *testing.T, f *fixture, key string) [][]any {
	t.Helper()
	rows, err := f.st.DB().QueryContext(context.Background(), `SELECT seq, role, content, body, trust, tokens_in, tokens_out, created_at
		FROM messages WHERE session_key = ? ORDER BY seq`, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		var seq, in, outTok, at int64
		var role, content, body, trust string
		if err := rows.Scan(&seq, &role, &content, &body, &trust, &in, &outTok, &at); err != nil {
			t.Fatal(err)
		}
		out = append(out, []any{seq, role, content, body, trust, in, outTok, at})
	}
	return out
}

// A fork's transcript is byte-identical to its source up to at_seq, and
// recorded as forked from it; the source is untouched.
func TestSessionsForkCopiesUpToAtSeq(t *testing.T) {
	f := newFixture(t, "")
	src := "agent:main:proj"
	f.session(src, "project", "", 0)
	var texts []string
	for i := 1; i <= 10; i++ {
		texts = append(texts, fmt.Sprintf("message %d with ünïcode and \"quotes\" \u2028", i))
	}
	f.messages(src, texts...)
	// A tool call and its results, with reasoning and token counts, copy too.
	tc := []store.Message{
		{SessionKey: src, Role: store.RoleAssistant, Trust: store.TrustModel, TokensIn: 12, TokensOut: 3, Content: store.Content{
			ToolCalls: []store.ToolCall{{ID: "c1", Name: "sessions_list", Args: json.RawMessage(`{"limit": 3}`)}}, Model: "m-served",
			Reasoning: json.RawMessage(`{"format":"anthropic","items":[{"type":"thinking"}]}`)}},
		{SessionKey: src, Role: store.RoleTool, Trust: store.TrustExternal, Content: store.Content{ToolResults: []store.ToolResult{{CallID: "c1", Name: "sessions_list", Content: "none"}}}},
	}
	if err := f.st.AppendMessages(context.Background(), tc); err != nil {
		t.Fatal(err)
	}
	before := rawRows(t, f, src)
	if len(before) != 12 {
		t.Fatalf("source has %d messages", len(before))
	}
	for _, at := range []int64{1, 6, 11, 12} {
		var out forkOut
		res := f.call("sessions_fork", map[string]any{"key": src, "at_seq": at, "label": "branch"}, &out)
		if res.IsError {
			t.Fatalf("at_seq %d: %s", at, text(res))
		}
		if out.ForkedFrom != src || out.AtSeq != at || out.MessageCount != int(at) || !strings.HasPrefix(out.Key, "agent:main:fork:") {
			t.Fatalf("at_seq %d: %+v", at, out)
		}
		got := rawRows(t, f, out.Key)
		if !reflect.DeepEqual(got, before[:at]) {
			t.Fatalf("at_seq %d: the copy differs from the source:\n got %v\nwant %v", at, got, before[:at])
		}
		var st struct {
			ForkedFrom  string `json:"forkedFrom"`
			ForkedAtSeq int64  `json:"forkedAtSeq"`
			Label       string `json:"label"`
			Tokens      struct {
				Total int64 `json:"total"`
			} `json:"tokens"`
		}
		if res := f.call("session_status", map[string]any{"key": out.Key}, &st); res.IsError {
			t.Fatal(text(res))
		}
		if st.ForkedFrom != src || st.ForkedAtSeq != at || st.Label != "branch" || st.Tokens.Total != 0 {
			t.Errorf("at_seq %d: session_status %+v", at, st)
		}
	}
	// Omitted at_seq copies everything; the source is unchanged by it all.
	var all forkOut
	if res := f.call("sessions_fork", map[string]any{"key": src}, &all); res.IsError || all.AtSeq != 12 {
		t.Fatalf("fork without at_seq: %+v %s", all, text(res))
	}
	if !reflect.DeepEqual(rawRows(t, f, src), before) {
		t.Fatal("forking changed the source")
	}
	// The fork is a session of its own: it grows apart from its source.
	f.messages(all.Key, "only in the fork")
	if n := len(rawRows(t, f, src)); n != 12 {
		t.Fatalf("a message in the fork reached the source (%d messages)", n)
	}
	f.wantError(f.call("sessions_fork", map[string]any{"key": src, "at_seq": 13}, nil), "at_seq 13 is past the last message", "seq 12")
	f.wantError(f.call("sessions_fork", map[string]any{"key": "agent:main:nothing"}, nil), "not found")
	f.wantError(f.call("sessions_fork", map[string]any{"key": src, "at_seq": -1}, nil), "at_seq")
}

// Forking goes through the gate: the source must be readable (access and
// the sessions_history right) and the new session reachable by the caller.
func TestSessionsForkPolicy(t *testing.T) {
	cfg := `
[mcp]
preset = "narrow"
[agents.presets.narrow]
tools.allow = ["sessions_fork", "session_status"]
[agents.presets.narrow.sessions]
key_prefix = "agent:main:"
`
	f := newFixture(t, cfg)
	f.session("agent:main:proj", "", "", 0)
	f.messages("agent:main:proj", "a", "b")
	f.session("agent:other:main", "", "", 0)
	var ref struct {
		Rule string `json:"rule"`
	}
	res := f.call("sessions_fork", map[string]any{"key": "agent:main:proj"}, &ref)
	f.wantError(res, "sessions_history")
	if ref.Rule != "tools.allow" {
		t.Errorf("rule %q, want tools.allow", ref.Rule)
	}
	res = f.call("sessions_fork", map[string]any{"key": "agent:other:main"}, &ref)
	f.wantError(res, "forbidden")
	if ref.Rule != "sessions.key_prefix" {
		t.Errorf("rule %q, want sessions.key_prefix", ref.Rule)
	}
	// Its own session needs no read right beyond being itself.
	f.call("session_status", map[string]any{}, nil) // records a call in the client's transcript
	var out forkOut
	if res := f.call("sessions_fork", map[string]any{"key": "current"}, &out); res.IsError || out.ForkedFrom != f.srv.Caller().Key {
		t.Fatalf("fork of own session: %s", text(res))
	}

	// A key_prefix that does not cover agent:<id>:fork:… refuses the fork:
	// the caller could not reach what it made.
	f2 := newFixture(t, `
[mcp]
preset = "proj"
[agents.presets.proj.sessions]
key_prefix = "agent:main:proj"
`)
	f2.session("agent:main:proj", "", "", 0)
	res = f2.call("sessions_fork", map[string]any{"key": "agent:main:proj"}, &ref)
	f2.wantError(res, "agent:main:fork:")
	if ref.Rule != "sessions.key_prefix" {
		t.Errorf("rule %q, want sessions.key_prefix", ref.Rule)
	}
}

// spawn context "fork": the child starts from a copy of its requester's
// transcript, then its task; "none" (the default) from its task only.
func TestSpawnContextForkThroughMCP(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	// Give the client's own transcript some content.
	f.messages("agent:main:main", "what the user asked", "what the client answered", "more context", "noted")
	parent := rawRows(t, f, "agent:main:main")
	if len(parent) < 4 {
		t.Fatalf("client transcript has %d messages", len(parent))
	}
	sp := f.spawn(map[string]any{"task": "quick fork check", "context": "fork"})
	if r := f.result(sp.RunID, 30); r.Status != "ok" {
		t.Fatalf("forked child: %+v", r)
	}
	child := rawRows(t, f, sp.ChildSessionKey)
	if len(child) < len(parent)+2 || !reflect.DeepEqual(child[:len(parent)], parent) {
		t.Fatalf("the child does not start with a copy of the requester's transcript:\nchild %v\nparent %v", child, parent)
	}
	if !strings.Contains(child[len(parent)][2].(string), "quick fork check") {
		t.Errorf("the task does not follow the copy: %v", child[len(parent)])
	}
	s, err := f.st.GetSession(context.Background(), sp.ChildSessionKey)
	if err != nil {
		t.Fatal(err)
	}
	if s.ForkedFrom != "agent:main:main" || s.ForkedAtSeq != int64(len(parent)) {
		t.Errorf("child recorded as forked from %q at %d", s.ForkedFrom, s.ForkedAtSeq)
	}
	// Default and "none": the task alone.
	for _, args := range []map[string]any{{"task": "quick plain"}, {"task": "quick none", "context": "none"}} {
		sp := f.spawn(args)
		f.result(sp.RunID, 30)
		if rows := rawRows(t, f, sp.ChildSessionKey); !strings.Contains(rows[0][2].(string), "quick") || len(rows) != 2 {
			t.Errorf("%v: child transcript %v", args, rows)
		}
	}
	// spawn_agent takes it as context_mode (its context is the [From:] label).
	var out struct {
		TaskID string `json:"task_id"`
		Status string `json:"status"`
	}
	if res := f.call("spawn_agent", map[string]any{"task": "quick agent", "context_mode": "fork"}, &out); res.IsError || out.Status != "ok" {
		t.Fatalf("spawn_agent fork: %s", text(res))
	}
	run, _ := f.st.GetRun(context.Background(), out.TaskID)
	if s, _ := f.st.GetSession(context.Background(), run.ChildKey); s.ForkedFrom != "agent:main:main" {
		t.Errorf("spawn_agent child forked from %q", s.ForkedFrom)
	}
	f.wantError(f.call("sessions_spawn", map[string]any{"task": "x", "context": "all"}, nil), "context")
}

// A child agent forks its own transcript into a grandchild: the
// grandchild starts from the orchestrator's history without the
// orchestrator's unanswered spawn call.
func TestSpawnContextForkFromChildAgent(t *testing.T) {
	sc, err := provider.ParseScript([]byte(`{"conversations": [
 {"match": "orchestrate-fork", "turns": [
   {"text": "thinking first"},
   {"tool_calls": [{"name": "spawn_agent", "args": {"task": "grandchild task", "context_mode": "fork"}}]},
   {"text": "orchestrator done: {{last_tool_result}}"}]},
 {"turns": [{"text": "default answer"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, "max_spawn_depth = 2"), "2025-11-25", map[string]provider.Provider{"script": provider.NewScripted("script", sc, nil)})
	// The first turn answers without tools, so the child's run must be
	// continued once: send it a message to reach the spawn turn.
	sp := f.spawn(map[string]any{"task": "orchestrate-fork now"})
	if r := f.result(sp.RunID, 30); r.Status != "ok" {
		t.Fatalf("first run: %+v", r)
	}
	var sent struct {
		Status string `json:"status"`
		RunID  string `json:"runId"`
	}
	if res := f.call("subagents", map[string]any{"action": "send", "target": sp.RunID, "message": "go on and delegate"}, &sent); res.IsError {
		t.Fatalf("subagents send: %s", text(res))
	}
	waitFor(t, "the orchestrator's second run", func() bool {
		runs, _ := f.st.ListRuns(context.Background(), store.RunFilter{Requesters: []string{sp.ChildSessionKey}})
		return len(runs) == 1 && store.Terminal(runs[0].State)
	})
	runs, _ := f.st.ListRuns(context.Background(), store.RunFilter{Requesters: []string{sp.ChildSessionKey}})
	gc, err := f.st.GetSession(context.Background(), runs[0].ChildKey)
	if err != nil {
		t.Fatal(err)
	}
	if gc.ForkedFrom != sp.ChildSessionKey {
		t.Fatalf("grandchild forked from %q, want %q", gc.ForkedFrom, sp.ChildSessionKey)
	}
	orch := rawRows(t, f, sp.ChildSessionKey)
	got := rawRows(t, f, gc.Key)
	at := int(gc.ForkedAtSeq)
	if at < 3 || !reflect.DeepEqual(got[:at], orch[:at]) {
		t.Fatalf("grandchild copy (at %d) differs from the orchestrator's transcript:\n%v\n%v", at, got, orch)
	}
	// The orchestrator's spawn call (unanswered while it waited) is not copied.
	var last store.Content
	_ = json.Unmarshal([]byte(got[at-1][2].(string)), &last)
	if len(last.ToolCalls) > 0 {
		t.Errorf("the copy ends with an unanswered tool call: %v", got[at-1])
	}
	if !strings.Contains(got[at][2].(string), "grandchild task") {
		t.Errorf("the grandchild's task does not follow the copy: %v", got[at])
	}
}

// From a child agent: forking its requester's session needs the right to
// read it (sessions_history is in the sub-agent default deny set); forking
// its own session does not.
func TestSessionsForkFromChildAgent(t *testing.T) {
	sc, err := provider.ParseScript([]byte(`{"conversations": [
 {"match": "fork-parent", "turns": [{"tool_calls": [{"name": "sessions_fork", "args": {"key": "agent:main:main"}}]}, {"text": "got: {{last_tool_result}}"}]},
 {"match": "fork-self", "turns": [{"tool_calls": [{"name": "sessions_fork", "args": {"key": "current", "label": "mine"}}]}, {"text": "got: {{last_tool_result}}"}]},
 {"turns": [{"text": "default answer"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, ""), "2025-11-25", map[string]provider.Provider{"script": provider.NewScripted("script", sc, nil)})
	f.call("agents_list", map[string]any{}, nil)
	sp := f.spawn(map[string]any{"task": "fork-parent please"})
	f.result(sp.RunID, 30)
	if got := toolResultOf(t, f, sp.RunID); !strings.Contains(got, "forbidden") || !strings.Contains(got, "[rule subagents.default_deny]") {
		t.Fatalf("a leaf forked its requester's session: %s", got)
	}
	sp = f.spawn(map[string]any{"task": "fork-self please"})
	f.result(sp.RunID, 30)
	got := toolResultOf(t, f, sp.RunID)
	if !strings.Contains(got, "Forked "+sp.ChildSessionKey) {
		t.Fatalf("a child could not fork its own session: %s", got)
	}
}
