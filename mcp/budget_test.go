package mcp

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// budgetScript: every model call reports its usage, so spending is known.
const budgetScript = `{"conversations": [
 {"match": "burn", "turns": [
   {"tool_calls": [{"name": "task_list", "args": {"action": "list_lists"}}], "usage": {"input_tokens": 5000, "output_tokens": 1000}},
   {"tool_calls": [{"name": "task_list", "args": {"action": "list_lists"}}], "usage": {"input_tokens": 5000, "output_tokens": 1000}},
   {"text": "burnt", "usage": {"input_tokens": 5000, "output_tokens": 1000}}]},
 {"match": "orchestrate", "turns": [
   {"tool_calls": [{"name": "spawn_agent", "args": {"task": "burn below"}}], "usage": {"input_tokens": 3000, "output_tokens": 1000}},
   {"text": "orchestrated: {{last_tool_result}}", "usage": {"input_tokens": 3000, "output_tokens": 1000}}]},
 {"match": "slowish", "turns": [{"delay_ms": 400, "text": "slow done"}]},
 {"turns": [{"text": "cheap", "usage": {"input_tokens": 5000, "output_tokens": 1000}}]}]}`

// budgetFixture is a server over the database at path (shared between
// fixtures to stand for several processes or a restart).
func budgetFixture(t *testing.T, path, extra string) *fixture {
	t.Helper()
	sc, err := provider.ParseScript([]byte(budgetScript))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(spawnConfig, "max_spawn_depth = 2\nmax_children_per_agent = 20")+extra), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Build(cfg, st, &BuildOptions{Version: "test", Providers: map[string]provider.Provider{"script": provider.NewScripted("script", sc, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := client.NewInProcessClient(srv.MCPServer())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: st, srv: srv, c: c, agent: cfg.MCP.Agent}
	t.Cleanup(f.close)
	return f
}

func (f *fixture) close() {
	f.c.Close()
	f.srv.Close()
	f.st.Close()
}

type budgetRun struct {
	Status   string `json:"status"`
	Note     string `json:"note"`
	Announce string `json:"announce"`
	Budget   []struct {
		Scope     string  `json:"scope"`
		Unit      string  `json:"unit"`
		Limit     float64 `json:"limit"`
		Spent     float64 `json:"spent"`
		Left      float64 `json:"left"`
		ConfigKey string  `json:"configKey"`
	} `json:"budget"`
}

// A spawn's own budget stops its run before the model call that would pass
// it: state budget, announced, with spent and left in spawn_status.
func TestBudgetRunLimitThroughMCP(t *testing.T) {
	f := budgetFixture(t, testdb.DSN(t, "b.db"), "")
	sp := f.spawn(map[string]any{"task": "burn it", "budget": map[string]any{"tokens": 10000}})
	if r := f.result(sp.RunID, 30); r.Status != "budget" {
		t.Fatalf("run ended %s (%s), want budget", r.Status, r.Note)
	}
	var st budgetRun
	f.call("spawn_status", map[string]any{"task_id": sp.RunID}, &st)
	if !strings.Contains(st.Note, "run token limit 10000 (the spawn's budget.run_tokens) would be exceeded: 6000 spent") {
		t.Errorf("note: %s", st.Note)
	}
	if !strings.Contains(st.Announce, "finished: budget") {
		t.Errorf("announce: %s", st.Announce)
	}
	if len(st.Budget) != 1 || st.Budget[0].Scope != "run" || st.Budget[0].Limit != 10000 || st.Budget[0].Spent != 6000 || st.Budget[0].Left != 4000 {
		t.Errorf("budget lines %+v", st.Budget)
	}
	// One model call was made, the second never was.
	run, _ := f.st.GetRun(context.Background(), sp.RunID)
	if run.Iterations != 1 || run.TokensIn+run.TokensOut != 6000 {
		t.Errorf("run spent %d tokens in %d calls", run.TokensIn+run.TokensOut, run.Iterations)
	}
	var ss budgetRun
	f.call("session_status", map[string]any{"key": sp.ChildSessionKey}, &ss)
	if len(ss.Budget) != 1 || ss.Budget[0].Left != 4000 {
		t.Errorf("session_status budget %+v", ss.Budget)
	}
	// Without a budget the same task runs to its end.
	sp = f.spawn(map[string]any{"task": "burn free"})
	if r := f.result(sp.RunID, 30); r.Status != "ok" {
		t.Fatalf("unbudgeted run: %s %s", r.Status, r.Note)
	}
	f.wantError(f.call("sessions_spawn", map[string]any{"task": "x", "budget": map[string]any{"tokens": -1}}, nil), "budget")
}

// A tree budget is shared by a child and every descendant: the grandchild
// and then the orchestrator itself stop when the tree's spending would
// pass it (from a child agent).
func TestBudgetTreeSharedFromChildAgent(t *testing.T) {
	f := budgetFixture(t, testdb.DSN(t, "b.db"), "\n[agents.defaults.budget]\ntree_tokens = 13000\n")
	var out struct {
		Status string `json:"status"`
		Note   string `json:"note"`
		TaskID string `json:"task_id"`
	}
	f.call("spawn_agent", map[string]any{"task": "orchestrate"}, &out)
	if out.Status != "budget" || !strings.Contains(out.Note, "spawn tree token limit 13000 (agents.defaults.budget.tree_tokens)") {
		t.Fatalf("orchestrator: %s %s", out.Status, out.Note)
	}
	run, _ := f.st.GetRun(context.Background(), out.TaskID)
	kids, _ := f.st.ListRuns(context.Background(), store.RunFilter{Requesters: []string{run.ChildKey}})
	if len(kids) != 1 || kids[0].State != "budget" {
		t.Fatalf("grandchild runs %+v", kids)
	}
	// Orchestrator 4000 + grandchild 6000 = 10000; the grandchild's next
	// call (≈6000) and then the orchestrator's (≈4000) would pass 13000.
	if got := run.TokensIn + run.TokensOut + kids[0].TokensIn + kids[0].TokensOut; got != 10000 {
		t.Errorf("the tree spent %d tokens, want 10000", got)
	}
}

// An agent's day budget is kept in the database: two servers on one
// database share it, and it holds across a restart.
func TestBudgetDaySurvivesRestartAndIsShared(t *testing.T) {
	path := testdb.DSN(t, "b.db")
	cfg := "\n[agents.defaults.budget]\nday_tokens = 13000\n"
	a := budgetFixture(t, path, cfg)
	b := budgetFixture(t, path, cfg)
	sp := a.spawn(map[string]any{"task": "cheap one"})
	if r := a.result(sp.RunID, 30); r.Status != "ok" {
		t.Fatalf("first: %s %s", r.Status, r.Note)
	}
	// 6000 spent of 13000: the other server's run may still make its call.
	sp = b.spawn(map[string]any{"task": "cheap two"})
	if r := b.result(sp.RunID, 30); r.Status != "ok" {
		t.Fatalf("second: %s %s", r.Status, r.Note)
	}
	var st budgetRun
	b.call("spawn_status", map[string]any{"task_id": sp.RunID}, &st)
	if len(st.Budget) != 1 || st.Budget[0].Scope != "day" || st.Budget[0].Spent != 12000 || st.Budget[0].Left != 1000 {
		t.Fatalf("the day's spending is not shared by both servers: %+v", st.Budget)
	}
	// 12000 spent: a first call (≈3,700 tokens of prompt and tools) would
	// pass 13000, so a run on either server stops before it.
	sp = a.spawn(map[string]any{"task": "cheap three"})
	if r := a.result(sp.RunID, 30); r.Status != "budget" || !strings.Contains(r.Note, "agent-day token limit 13000 (agents.defaults.budget.day_tokens)") {
		t.Fatalf("third: %s %s", r.Status, r.Note)
	}
	a.close()
	b.close()
	// After a restart the spending is still there.
	c := budgetFixture(t, path, cfg)
	sp = c.spawn(map[string]any{"task": "cheap four"})
	if r := c.result(sp.RunID, 30); r.Status != "budget" {
		t.Fatalf("after restart: %s %s", r.Status, r.Note)
	}
	if run, _ := c.st.GetRun(context.Background(), sp.RunID); run.Iterations != 0 || run.TokensIn != 0 {
		t.Errorf("a stopped run made %d model calls", run.Iterations)
	}
}
