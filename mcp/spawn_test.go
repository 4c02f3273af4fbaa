package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// testScript is the scripted model behind the spawn tests: the task text
// picks the conversation.
const testScript = `{"conversations": [
 {"match": "quick", "turns": [{"text": "quick result", "usage": {"input_tokens": 800, "output_tokens": 400}}]},
 {"match": "slow", "turns": [{"delay_ms": 60000, "text": "too late"}]},
 {"match": "silent", "turns": [{"text": "NO_REPLY"}]},
 {"match": "orchestrate", "turns": [
   {"tool_calls": [{"name": "sessions_spawn", "args": {"task": "slow grandchild", "label": "gc"}}]},
   {"delay_ms": 60000, "text": "done orchestrating"}]},
 {"match": "yield", "turns": [{"tool_calls": [{"name": "sessions_yield", "args": {"result": {"verdict": "pr"}}}]}]},
 {"match": "peek", "turns": [{"tool_calls": [{"name": "sessions_list", "args": {}}]}, {"text": "peeked: {{last_tool_result}}"}]},
 {"turns": [{"text": "default answer"}]}
]}`

const spawnConfig = `
[providers.script]
kind = "scripted"
script = "unused.json"
[providers.other]
kind = "openai-compatible"
[[models]]
id = "script/m"
provider = "script"
cost = { input = 1.0, output = 2.0 }
[[models]]
id = "script/cheap"
provider = "script"
[agents.defaults]
model = "script/m"
[agents.defaults.subagents]
archive_after_minutes = 60
%s
[[agents.list]]
id = "main"
[agents.list.subagents]
allow_agents = ["researcher"]
[[agents.list]]
id = "researcher"
`

func scripted(t *testing.T) *provider.Scripted {
	t.Helper()
	sc, err := provider.ParseScript([]byte(testScript))
	if err != nil {
		t.Fatal(err)
	}
	return provider.NewScripted("script", sc, nil)
}

// newSpawnFixture: subagents holds extra [agents.defaults.subagents] keys.
func newSpawnFixture(t *testing.T, subagents string, opts ...client.ClientOption) (*fixture, *provider.Scripted) {
	t.Helper()
	sp := scripted(t)
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, subagents), "2025-11-25", map[string]provider.Provider{"script": sp}, opts...)
	return f, sp
}

// waitFor polls cond (bounded) for state another goroutine produces.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) runState(id string) string {
	r, err := f.st.GetRun(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return r.State
}

type spawnOut struct {
	Status          string   `json:"status"`
	RunID           string   `json:"runId"`
	ChildSessionKey string   `json:"childSessionKey"`
	ModelApplied    string   `json:"modelApplied"`
	Warnings        []string `json:"warnings"`
	Rule            string   `json:"rule"`
	Message         string   `json:"message"`
}

type runOut struct {
	TaskID   string          `json:"task_id"`
	Status   string          `json:"status"`
	Text     string          `json:"text"`
	Output   json.RawMessage `json:"output"`
	Note     string          `json:"note"`
	Announce string          `json:"announce"`
	ChildKey string          `json:"childSessionKey"`
	Model    string          `json:"model"`
}

func (f *fixture) spawn(args map[string]any) spawnOut {
	f.t.Helper()
	var out spawnOut
	res := f.call("sessions_spawn", args, &out)
	if res.IsError && out.Status == "" {
		f.t.Fatalf("sessions_spawn: %s", text(res))
	}
	return out
}

func (f *fixture) result(id string, wait int) runOut {
	f.t.Helper()
	var out runOut
	res := f.call("spawn_result", map[string]any{"task_id": id, "wait_seconds": wait}, &out)
	// A run that ended in error is an error result, in its own shape.
	if res.IsError != (out.Status == "error") || out.Status == "" {
		f.t.Fatalf("spawn_result: isError %v for status %q: %s", res.IsError, out.Status, text(res))
	}
	return out
}

func countAnnounces(res *mcp.CallToolResult) int {
	return strings.Count(text(res), "[announce]")
}

func TestSpawnAcceptedOKAnnouncedOnce(t *testing.T) {
	var mu sync.Mutex
	var notes []mcp.JSONRPCNotification
	f, _ := newSpawnFixture(t, "")
	f.c.OnNotification(func(n mcp.JSONRPCNotification) {
		mu.Lock()
		notes = append(notes, n)
		mu.Unlock()
	})
	out := f.spawn(map[string]any{"task": "quick job", "label": "q"})
	if out.Status != "accepted" || out.RunID == "" || !strings.HasPrefix(out.ChildSessionKey, "agent:main:subagent:") || out.ModelApplied != "script/m" {
		t.Fatalf("spawn: %+v", out)
	}
	r := f.result(out.RunID, 30)
	if r.Status != "ok" || r.Text != "quick result" {
		t.Fatalf("result: %+v", r)
	}
	if !strings.Contains(r.Announce, "finished: ok") || !strings.Contains(r.Announce, "Stats: runtime") ||
		!strings.Contains(r.Announce, "tokens 1.2k (in 800 / out 400)") || !strings.Contains(r.Announce, "est $0.0016") ||
		!strings.Contains(r.Announce, "transcript session://"+out.ChildSessionKey) || !strings.Contains(r.Announce, "UNTRUSTED DATA") {
		t.Fatalf("announce: %s", r.Announce)
	}
	// The spawn_result call above already carried the announce as a prefix
	// (the run had ended before its result was built); later calls do not.
	first := f.call("sessions_list", nil, nil)
	second := f.call("sessions_list", nil, nil)
	total := countAnnounces(first) + countAnnounces(second)
	if total > 1 || countAnnounces(second) != 0 {
		t.Fatalf("announce delivered %d times", total)
	}
	var h struct {
		Messages []struct {
			Content string `json:"content"`
			Trust   string `json:"trust"`
		} `json:"messages"`
	}
	f.call("sessions_history", map[string]any{"key": "current", "limit": 200}, &h)
	inTranscript := 0
	for _, m := range h.Messages {
		if strings.Contains(m.Content, "[announce]") && strings.Contains(m.Content, out.RunID) {
			inTranscript++
			if m.Trust != "inter_session" {
				t.Errorf("announce trust %q", m.Trust)
			}
		}
	}
	if inTranscript != 1 {
		t.Fatalf("announce in the requester's transcript %d times", inTranscript)
	}
	var a *store.Announce
	a, err := f.st.GetAnnounce(context.Background(), out.RunID)
	if err != nil || a.DeliveredAt == 0 {
		t.Fatalf("announce not marked delivered: %+v %v", a, err)
	}
	mu.Lock()
	_ = len(notes) // notifications are best effort; delivery is asserted above
	mu.Unlock()
}

func TestSpawnYieldAndSilentAndModelWarnings(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	out := f.spawn(map[string]any{"task": "yield a verdict", "model": "nope/x", "thinking": "low"})
	if len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], "nope/x") || out.ModelApplied != "script/m" {
		t.Fatalf("warnings: %+v", out)
	}
	r := f.result(out.RunID, 30)
	if r.Status != "ok" || string(r.Output) != `{"verdict":"pr"}` {
		t.Fatalf("yield: %+v", r)
	}
	sess, _ := f.st.GetSession(context.Background(), out.ChildSessionKey)
	if sess.Thinking != "low" || sess.Model != "script/m" || sess.Depth != 1 || sess.ParentKey != "agent:main:main" {
		t.Fatalf("child session: %+v", sess)
	}
	bad := f.call("sessions_spawn", map[string]any{"task": "x", "thinking": "max"}, nil)
	f.wantError(bad, "thinking")
	unk := f.call("sessions_spawn", map[string]any{"task": "x", "colour": "red"}, nil)
	f.wantError(unk, "colour")

	s := f.spawn(map[string]any{"task": "silent please"})
	f.result(s.RunID, 30)
	a, _ := f.st.GetAnnounce(context.Background(), s.RunID)
	if !a.Silent {
		t.Fatalf("NO_REPLY announce not silent")
	}
	if n := countAnnounces(f.call("sessions_list", nil, nil)); n != 0 {
		t.Fatalf("silent announce delivered %d", n)
	}
	// NO_REPLY keeps the status and silences the rest: no body, no stats,
	// in the requester's transcript either.
	msgs, err := f.st.Transcript(context.Background(), "agent:main:main")
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, m := range msgs {
		if strings.Contains(m.Content.Text, s.RunID) && strings.HasPrefix(m.Content.Text, "[announce]") {
			seen = true
			if strings.Contains(m.Content.Text, "Stats:") || strings.Contains(m.Content.Text, "UNTRUSTED DATA") || !strings.Contains(m.Content.Text, "finished: ok") {
				t.Fatalf("silent announce in the requester's transcript: %q", m.Content.Text)
			}
		}
	}
	if !seen {
		t.Fatal("the silent announce's status is not in the requester's transcript")
	}
	// spawn_agent with an unknown model says so in the text too.
	res := f.call("spawn_agent", map[string]any{"task": "quick one", "model": "nope/x", "nonblocking": true}, nil)
	if !strings.Contains(text(res), "Warning: ") || !strings.Contains(text(res), "nope/x") {
		t.Fatalf("spawn_agent unknown model, text: %s", text(res))
	}
}

func TestSpawnTimeoutKillAndWaitExpiry(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	to := f.spawn(map[string]any{"task": "slow work", "runTimeoutSeconds": 1})
	if r := f.result(to.RunID, 30); r.Status != "timeout" {
		t.Fatalf("timeout: %+v", r)
	}
	slow := f.spawn(map[string]any{"task": "slow forever"})
	r := f.result(slow.RunID, 1) // wait_seconds expiry: current state, run goes on
	if r.Status != "running" && r.Status != "queued" {
		t.Fatalf("expiry: %+v", r)
	}
	var c struct {
		Status string   `json:"status"`
		Killed []string `json:"killed"`
	}
	f.call("cancel_spawn", map[string]any{"task_id": slow.RunID}, &c)
	if c.Status != "killed" || len(c.Killed) != 1 {
		t.Fatalf("cancel: %+v", c)
	}
	if r := f.result(slow.RunID, 0); r.Status != "killed" {
		t.Fatalf("after cancel: %+v", r)
	}
	// A cancel is final: nothing overwrites it later.
	time.Sleep(0)
	run, _ := f.st.GetRun(context.Background(), slow.RunID)
	if run.State != "killed" {
		t.Fatalf("state %s", run.State)
	}
}

func TestSpawnCascadeKillAndOrchestrator(t *testing.T) {
	f, _ := newSpawnFixture(t, "max_spawn_depth = 2")
	out := f.spawn(map[string]any{"task": "orchestrate the work", "label": "boss"})
	var grandchild *store.Run
	waitFor(t, "the child to spawn a grandchild", func() bool {
		runs, _ := f.st.ListRuns(context.Background(), store.RunFilter{Requesters: []string{out.ChildSessionKey}})
		if len(runs) == 1 {
			grandchild = runs[0]
		}
		return grandchild != nil
	})
	if grandchild.Depth != 2 || !strings.HasPrefix(grandchild.ChildKey, out.ChildSessionKey+":subagent:") {
		t.Fatalf("grandchild: depth %d key %s", grandchild.Depth, grandchild.ChildKey)
	}
	var list struct {
		Active int `json:"active"`
		Runs   []struct {
			TaskID string `json:"task_id"`
		} `json:"runs"`
	}
	res := f.call("subagents", nil, &list)
	if list.Active != 1 || !strings.Contains(text(res), "🧭 Subagents (current session)") || !strings.Contains(text(res), "1) 🔄 · boss") {
		t.Fatalf("list: %s", text(res))
	}
	var k struct {
		Killed []string `json:"killed"`
	}
	res = f.call("subagents", map[string]any{"action": "stop", "target": "1"}, &k)
	if len(k.Killed) != 2 || !strings.Contains(text(res), "Stop requested for boss") {
		t.Fatalf("cascade kill: %+v %s", k, text(res))
	}
	if st := f.runState(out.RunID); st != "killed" {
		t.Fatalf("child %s", st)
	}
	if st := f.runState(grandchild.ID); st != "killed" {
		t.Fatalf("grandchild %s", st)
	}
	// The grandchild announced to its parent (the child), not to us.
	a, err := f.st.GetAnnounce(context.Background(), grandchild.ID)
	if err != nil || a.RequesterKey != out.ChildSessionKey {
		t.Fatalf("grandchild announce: %+v %v", a, err)
	}
}

func TestSpawnLeafCannotSpawn(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	out := f.spawn(map[string]any{"task": "orchestrate as a leaf"})
	var refused string
	waitFor(t, "the leaf's refused spawn", func() bool {
		msgs, _ := f.st.Transcript(context.Background(), out.ChildSessionKey)
		for _, m := range msgs {
			for _, r := range m.Content.ToolResults {
				refused = r.Content
			}
		}
		return refused != ""
	})
	if !strings.Contains(refused, "forbidden") || !strings.Contains(refused, "subagents.default_deny") {
		t.Fatalf("leaf spawn result: %s", refused)
	}
	f.call("cancel_spawn", map[string]any{"task_id": out.RunID}, nil)
}

func TestSpawnQueueAndLimits(t *testing.T) {
	f, _ := newSpawnFixture(t, "max_concurrent = 1\nmax_children_per_agent = 2")
	a := f.spawn(map[string]any{"task": "slow one"})
	waitFor(t, "the first run to start", func() bool { return f.runState(a.RunID) == "running" })
	b := f.spawn(map[string]any{"task": "quick two"})
	if st := f.runState(b.RunID); st != "queued" {
		t.Fatalf("second run with max_concurrent 1: %s", st)
	}
	c := f.spawn(map[string]any{"task": "quick three"})
	if c.Status != "forbidden" || c.Rule != "subagents.max_children_per_agent" {
		t.Fatalf("third child: %+v", c)
	}
	f.call("cancel_spawn", map[string]any{"task_id": a.RunID}, nil)
	if r := f.result(b.RunID, 30); r.Status != "ok" {
		t.Fatalf("queued run after the lane freed: %+v", r)
	}
}

// A spawn that asks no approval is counted against max_children_per_agent
// in its own transaction only, not read before it as well; a spawn over
// the limit that a later check also refuses (allow_agents, the thinking
// level, the child's preparation, spawn_agent's own options) is still
// refused for the limit, first, in the documented order.
func TestSpawnLimitRefusedFirst(t *testing.T) {
	// No approval: nothing asks for the count before the transaction
	// (TestSpawnQueueAndLimits has the default, "auto").
	f, _ := newSpawnFixture(t, "max_concurrent = 1\nmax_children_per_agent = 1\n[approval]\nspawn-subagent = \"none\"")
	a := f.spawn(map[string]any{"task": "slow one"})
	waitFor(t, "the first run to start", func() bool { return f.runState(a.RunID) == "running" })
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"sessions_spawn", map[string]any{"task": "quick", "agentId": "ops"}},
		{"sessions_spawn", map[string]any{"task": "quick", "thinking": "sideways"}},
		{"sessions_spawn", map[string]any{"task": "quick", "preset": "no-such-preset"}},
		{"sessions_spawn", map[string]any{"task": "quick"}},
		{"spawn_agent", map[string]any{"task": "quick", "delegate_only": true, "allow_tools": []string{"sessions_list"}, "nonblocking": true}},
		{"spawn_agent", map[string]any{"task": "quick", "nonblocking": true}},
	} {
		var out spawnOut
		res := f.call(c.tool, c.args, &out)
		if !res.IsError || out.Rule != "subagents.max_children_per_agent" {
			t.Errorf("%s %v over the limit: rule %q: %s", c.tool, c.args, out.Rule, text(res))
		}
	}
	f.call("cancel_spawn", map[string]any{"task_id": a.RunID}, nil)
	// Under the limit the other checks answer for themselves.
	waitFor(t, "the first run to end", func() bool { return f.runState(a.RunID) != "running" })
	if no := f.spawn(map[string]any{"task": "quick", "agentId": "ops"}); no.Rule != "subagents.allow_agents" {
		t.Fatalf("disallowed agent under the limit: %+v", no)
	}
}

func TestSpawnCrossAgent(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	ok := f.spawn(map[string]any{"task": "quick research", "agentId": "researcher"})
	if ok.Status != "accepted" || !strings.HasPrefix(ok.ChildSessionKey, "agent:researcher:subagent:") {
		t.Fatalf("allowed agent: %+v", ok)
	}
	no := f.spawn(map[string]any{"task": "quick ops", "agentId": "ops"})
	if no.Status != "forbidden" || no.Rule != "subagents.allow_agents" || !strings.Contains(no.Message, "agents.list[0].subagents.allow_agents") {
		t.Fatalf("disallowed agent: %+v", no)
	}
}

func TestSpawnCleanupAndOwnership(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	del := f.spawn(map[string]any{"task": "quick and delete", "cleanup": "delete"})
	keep := f.spawn(map[string]any{"task": "quick and keep"})
	f.result(del.RunID, 30)
	f.result(keep.RunID, 30)
	ds, _ := f.st.GetSession(context.Background(), del.ChildSessionKey)
	ks, _ := f.st.GetSession(context.Background(), keep.ChildSessionKey)
	if ds.ArchivedAt == 0 || ks.ArchivedAt != 0 {
		t.Fatalf("cleanup: delete archived %v, keep archived %v", ds.ArchivedAt, ks.ArchivedAt)
	}
	var st struct {
		ExpiresAt int64 `json:"expiresAt"`
	}
	f.call("session_status", map[string]any{"key": keep.ChildSessionKey}, &st)
	if st.ExpiresAt == 0 {
		t.Fatal("kept child has no expiresAt (archive_after_minutes = 60)")
	}
	// Another session may not see or cancel our runs.
	other := f.srv.Caller()
	other.Key = "agent:main:other"
	res := f.srv.reg.Call(context.Background(), other, nil, "spawn_status", json.RawMessage(`{"task_id":"`+keep.RunID+`"}`), nil)
	if !res.IsError || !strings.Contains(res.Text, "spawn task access denied") {
		t.Fatalf("ownership: %s", res.Text)
	}
	res = f.srv.reg.Call(context.Background(), other, nil, "cancel_spawn", json.RawMessage(`{"task_id":"`+keep.RunID+`"}`), nil)
	if !res.IsError || !strings.Contains(res.Text, "spawn task access denied") {
		t.Fatalf("ownership cancel: %s", res.Text)
	}
	var sent struct {
		Status string `json:"status"`
		Reply  string `json:"reply"`
	}
	f.call("subagents", map[string]any{"action": "send", "target": "last", "message": "anything else?"}, &sent)
	if sent.Status != "ok" || sent.Reply != "quick result" {
		t.Fatalf("send to a finished child: %+v", sent)
	}
}

// steerProvider blocks until cancelled unless the conversation holds a
// steering message, which it answers at once.
type steerProvider struct{}

func (steerProvider) Name() string { return "script" }
func (steerProvider) Complete(ctx context.Context, req provider.Request) (*provider.Response, error) {
	for _, m := range req.Messages {
		if strings.Contains(m.Text, "change of plan") {
			return &provider.Response{Text: "steered ok"}, nil
		}
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestSteer(t *testing.T) {
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, ""), "2025-11-25", map[string]provider.Provider{"script": steerProvider{}})
	out := f.spawn(map[string]any{"task": "long task"})
	waitFor(t, "the run to start", func() bool { return f.runState(out.RunID) == "running" })
	var st struct {
		Status string `json:"status"`
		RunID  string `json:"runId"`
	}
	res := f.call("subagents", map[string]any{"action": "steer", "target": "last", "message": "change of plan"}, &st)
	if st.Status != "accepted" || st.RunID == out.RunID {
		t.Fatalf("steer: %s", text(res))
	}
	if r := f.result(st.RunID, 30); r.Status != "ok" || r.Text != "steered ok" {
		t.Fatalf("steered run: %+v", r)
	}
	if f.runState(out.RunID) != "killed" {
		t.Fatal("replaced run not killed")
	}
	if _, err := f.st.GetAnnounce(context.Background(), out.RunID); err == nil {
		t.Fatal("the replaced run announced")
	}
	// The steered run is still named after the child's task, not the steer message.
	if a, err := f.st.GetAnnounce(context.Background(), st.RunID); err != nil || !strings.Contains(a.Body, `"long task"`) {
		t.Fatalf("steered run's announce: %+v %v", a, err)
	}
	again := f.call("subagents", map[string]any{"action": "steer", "target": "last", "message": "change of plan 2"}, nil)
	f.wantError(again, "rate-limited")
}

// blockingProvider answers after the test releases it (or blocks until cancelled).
type blockingProvider struct {
	started chan struct{}
	release chan struct{}
}

func (p *blockingProvider) Name() string { return "script" }
func (p *blockingProvider) Complete(ctx context.Context, req provider.Request) (*provider.Response, error) {
	select {
	case p.started <- struct{}{}:
	default:
	}
	select {
	case <-p.release:
		return &provider.Response{Text: "blocking result"}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestSpawnAgentBlockingProgressAndCancel(t *testing.T) {
	bp := &blockingProvider{started: make(chan struct{}, 1), release: make(chan struct{})}
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, ""), "2025-11-25", map[string]provider.Provider{"script": bp})
	var mu sync.Mutex
	progress := 0
	f.c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			mu.Lock()
			progress++
			mu.Unlock()
		}
	})
	// Blocking call completes with the child's answer.
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "spawn_agent"
		req.Params.Arguments = map[string]any{"task": "block then answer"}
		req.Params.Meta = &mcp.Meta{ProgressToken: "p1"}
		res, _ := f.c.CallTool(context.Background(), req)
		done <- res
	}()
	<-bp.started
	close(bp.release)
	res := <-done
	var out struct {
		Status string `json:"status"`
		Text   string `json:"text"`
		TaskID string `json:"task_id"`
	}
	b, _ := json.Marshal(res.StructuredContent)
	json.Unmarshal(b, &out)
	if out.Status != "ok" || out.Text != "blocking result" {
		t.Fatalf("blocking spawn_agent: %s", text(res))
	}
	mu.Lock()
	got := progress
	mu.Unlock()
	_ = got // progress notifications are best effort (mcp-go drops them when its channel is full)

	// Cancelling the MCP request kills the child and its provider call.
	bp2 := &blockingProvider{started: make(chan struct{}, 1), release: make(chan struct{})}
	g := newFixtureFull(t, fmt.Sprintf(spawnConfig, ""), "2025-11-25", map[string]provider.Provider{"script": bp2})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "spawn_agent"
		req.Params.Arguments = map[string]any{"task": "block until cancelled"}
		_, err := g.c.CallTool(ctx, req)
		errc <- err
	}()
	<-bp2.started
	cancel()
	<-errc
	var run *store.Run
	waitFor(t, "the child to be killed", func() bool {
		runs, _ := g.st.ListRuns(context.Background(), store.RunFilter{Requesters: []string{"agent:main:main"}})
		if len(runs) == 1 && runs[0].State == "killed" {
			run = runs[0]
		}
		return run != nil
	})
	if !strings.Contains(run.Note, "cancelled by the client") {
		t.Fatalf("kill note: %q", run.Note)
	}
}

func TestSpawnAgentOptions(t *testing.T) {
	f, sp := newSpawnFixture(t, "")
	var out struct {
		Status string          `json:"status"`
		Output json.RawMessage `json:"output"`
		TaskID string          `json:"task_id"`
	}
	res := f.call("spawn_agent", map[string]any{"task": "yield a classification",
		"output_schema": map[string]any{"type": "object", "required": []string{"verdict"}, "properties": map[string]any{"verdict": map[string]any{"enum": []string{"pr", "file"}}}},
		"active_tools":  []string{"sessions_yield"}, "tool_choice": map[string]any{"type": "tool", "name": "sessions_yield"}}, &out)
	if out.Status != "ok" || string(out.Output) != `{"verdict":"pr"}` {
		t.Fatalf("spawn_agent with output_schema: %s", text(res))
	}
	reqs := sp.Requests()
	last := reqs[len(reqs)-1]
	if last.ToolChoice.Mode != "tool" || last.ToolChoice.Name != "sessions_yield" || len(last.Tools) != 1 {
		t.Fatalf("controls did not reach the provider: %+v %+v", last.ToolChoice, last.Tools)
	}
	nb := f.call("spawn_agent", map[string]any{"task": "quick nonblocking", "nonblocking": true}, &out)
	if out.Status != "running" || out.TaskID == "" {
		t.Fatalf("nonblocking: %s", text(nb))
	}
	if r := f.result(out.TaskID, 30); r.Status != "ok" {
		t.Fatalf("nonblocking result: %+v", r)
	}
	bad := f.call("spawn_agent", map[string]any{"task": "x", "output_schema": "not a schema"}, nil)
	f.wantError(bad, "output_schema")
}

func TestBlockingSpawnAgentIsNotAnnouncedAgain(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	res := f.call("spawn_agent", map[string]any{"task": "quick inline"}, nil)
	if countAnnounces(res) != 0 {
		t.Fatalf("blocking result also announced: %s", text(res))
	}
	// The stats line the README promises comes with the inline result.
	if tx := text(res); !strings.Contains(tx, "Stats: runtime ") || !strings.Contains(tx, "tokens 1.2k (in 800 / out 400)") {
		t.Fatalf("blocking spawn_agent without its stats line: %s", tx)
	}
	if n := countAnnounces(f.call("sessions_list", nil, nil)); n != 0 {
		t.Fatalf("announced later: %d", n)
	}
}

type panicProvider struct{}

func (panicProvider) Name() string { return "script" }
func (panicProvider) Complete(ctx context.Context, req provider.Request) (*provider.Response, error) {
	panic("provider bug")
}

// A panic inside a run (a provider bug) fails that run; the server keeps serving.
func TestRunPanicFailsOnlyTheRun(t *testing.T) {
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, ""), "2025-11-25", map[string]provider.Provider{"script": panicProvider{}})
	out := f.spawn(map[string]any{"task": "trigger the bug"})
	r := f.result(out.RunID, 30)
	if r.Status != "error" || !strings.Contains(r.Note, "provider bug") {
		t.Fatalf("panicking run: %+v", r)
	}
	if res := f.call("sessions_list", nil, nil); res.IsError {
		t.Fatalf("server not serving after a run panicked: %s", text(res))
	}
}

// The run id the subagents list shows is one that target accepts and
// that picks its own row, even for runs made in the same millisecond
// (UUIDv7 ids share their first characters then).
func TestSubagentsListShowsTargetableIDs(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	ids := map[string]bool{}
	for i := 0; i < 4; i++ {
		ids[f.spawn(map[string]any{"task": fmt.Sprintf("quick job %d", i)}).RunID] = true
	}
	res := f.call("subagents", map[string]any{"action": "list"}, nil)
	rows := 0
	for _, line := range strings.Split(text(res), "\n") {
		i := strings.Index(line, " · run ")
		if i < 0 {
			continue
		}
		shown := strings.Fields(line[i+len(" · run "):])[0]
		rows++
		var info struct {
			Runs []struct {
				TaskID string `json:"task_id"`
			} `json:"runs"`
		}
		r := f.call("subagents", map[string]any{"action": "info", "target": shown}, &info)
		if r.IsError || len(info.Runs) != 1 || !ids[info.Runs[0].TaskID] || !strings.HasPrefix(info.Runs[0].TaskID, shown) {
			t.Fatalf("target %q (shown in %q): %s", shown, line, text(r))
		}
		delete(ids, info.Runs[0].TaskID) // each shown id picks a different run
	}
	if rows != 4 || len(ids) != 0 {
		t.Fatalf("%d rows, %d runs not reached by their shown id:\n%s", rows, len(ids), text(res))
	}
}

// Seed 000's task API: cancel_spawn's cancelled, spawn_status's task,
// finished_at, elapsed_secs, error; spawn_list with no arguments.
func TestSpawnTaskAPICompatibility(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	slow := f.spawn(map[string]any{"task": "slow forever", "label": "the slow one"})
	var c struct {
		Cancelled bool   `json:"cancelled"`
		Status    string `json:"status"`
	}
	f.call("cancel_spawn", map[string]any{"task_id": slow.RunID}, &c)
	if !c.Cancelled || c.Status != "killed" {
		t.Fatalf("cancel_spawn: %+v", c)
	}
	f.call("cancel_spawn", map[string]any{"task_id": slow.RunID}, &c)
	if c.Cancelled {
		t.Fatalf("a second cancel_spawn says cancelled: %+v", c)
	}
	var st struct {
		Status      string  `json:"status"`
		Task        string  `json:"task"`
		FinishedAt  int64   `json:"finished_at"`
		ElapsedSecs float64 `json:"elapsed_secs"`
		Cancelled   bool    `json:"cancelled"`
		Error       string  `json:"error"`
	}
	res := f.call("spawn_status", map[string]any{"task_id": slow.RunID}, &st)
	if st.Status != "killed" || !st.Cancelled || st.Task != "slow forever" || st.FinishedAt == 0 || st.ElapsedSecs < 0 {
		t.Fatalf("spawn_status of a cancelled run: %+v", st)
	}
	// The text shows the task (not the label) and the stop note once.
	if tx := text(res); !strings.Contains(tx, "Task: slow forever") || !strings.Contains(tx, "Label: the slow one") || strings.Count(tx, "Note: ") != 1 {
		t.Fatalf("spawn_status text:\n%s", tx)
	}
	var list struct {
		Count int `json:"count"`
	}
	if res := f.call("spawn_list", nil, &list); res.IsError || list.Count != 1 {
		t.Fatalf("spawn_list with no arguments: %s", text(res))
	}
	if res := f.call("spawn_list", map[string]any{"status": "cancelled"}, &list); res.IsError || list.Count != 1 {
		t.Fatalf("spawn_list status cancelled (= killed): %s", text(res))
	}
	// A failed run: status error, error says why, and the result is an error result.
	to := f.spawn(map[string]any{"task": "slow work", "runTimeoutSeconds": 1})
	f.result(to.RunID, 30)
	res = f.call("spawn_status", map[string]any{"task_id": to.RunID}, &st)
	if st.Status != "timeout" || st.Error == "" {
		t.Fatalf("spawn_status of a timed-out run: %+v %s", st, text(res))
	}
}

// With no config, a spawn says in one line what to configure and how to
// try it without a key.
func TestSpawnWithNoModelsSaysWhatToConfigure(t *testing.T) {
	f := newFixture(t, "")
	for _, tool := range []string{"spawn_agent", "sessions_spawn"} {
		res := f.call(tool, map[string]any{"task": "x"}, nil)
		f.wantError(res, "no [[models]]", "agents.defaults.model", "sessionplane demo")
		if tx := text(res); strings.Contains(tx, "\n") || len(tx) > 300 {
			t.Errorf("%s: want one short line, got %q", tool, tx)
		}
	}
}
