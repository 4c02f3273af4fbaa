package mcp

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

type batchOut struct {
	Status string `json:"status"`
	Note   string `json:"note"`
	Tasks  []struct {
		TaskID string `json:"task_id"`
		Status string `json:"status"`
		Task   string `json:"task"`
		Text   string `json:"text"`
	} `json:"tasks"`
}

type waitOut struct {
	Mode     string `json:"mode"`
	Done     bool   `json:"done"`
	Finished []struct {
		TaskID string `json:"task_id"`
		Status string `json:"status"`
		Text   string `json:"text"`
	} `json:"finished"`
	Running []struct {
		TaskID string `json:"task_id"`
		Status string `json:"status"`
	} `json:"running"`
}

// spawn_agent tasks[] with 64 tasks: every child runs, results come back
// in the order of the tasks, and none is announced again.
func TestSpawnAgentTasks64(t *testing.T) {
	f, _ := newSpawnFixture(t, "max_children_per_agent = 64\nmax_concurrent = 16")
	tasks := make([]string, 64)
	for i := range tasks {
		tasks[i] = fmt.Sprintf("quick task %02d", i)
	}
	var out batchOut
	res := f.call("spawn_agent", map[string]any{"tasks": tasks}, &out)
	if res.IsError || out.Status != "ok" || len(out.Tasks) != 64 {
		t.Fatalf("batch: %s", firstN(text(res), 400))
	}
	for i, it := range out.Tasks {
		if it.Status != "ok" || it.Text != "quick result" || it.Task != tasks[i] {
			t.Fatalf("task %d: %+v", i, it)
		}
	}
	// Returned inline: the next call carries no announce prefix for them.
	if n := countAnnounces(f.call("sessions_list", map[string]any{}, nil)); n != 0 {
		t.Errorf("%d announces delivered again", n)
	}
	// Over the limit: refused whole, nothing started.
	f.wantError(f.call("spawn_agent", map[string]any{"tasks": append(tasks, "one more")}, nil), "tasks")
	g, _ := newSpawnFixture(t, "max_children_per_agent = 3")
	var ref struct {
		Rule string `json:"rule"`
	}
	res = g.call("spawn_agent", map[string]any{"tasks": []string{"quick a", "quick b", "quick c", "quick d"}}, &ref)
	g.wantError(res, "max_children_per_agent = 3")
	if ref.Rule != "subagents.max_children_per_agent" {
		t.Errorf("rule %q", ref.Rule)
	}
	if runs, _ := g.st.ListRuns(context.Background(), store.RunFilter{}); len(runs) != 0 {
		t.Errorf("%d runs started by a refused batch", len(runs))
	}
	g.wantError(g.call("spawn_agent", map[string]any{"tasks": []string{"quick a"}, "task": "quick b"}, nil), "task or tasks")
	g.wantError(g.call("spawn_agent", map[string]any{"tasks": []string{"quick a", " "}}, nil), "tasks[1] is empty")
}

// spawn_wait over 64 nonblocking runs: mode all returns every result;
// mode any returns as soon as one ends, listing the rest as running; a run
// of someone else is refused.
func TestSpawnWait(t *testing.T) {
	f, _ := newSpawnFixture(t, "max_children_per_agent = 70\nmax_concurrent = 16")
	var ids []string
	for i := 0; i < 64; i++ {
		sp := f.spawn(map[string]any{"task": fmt.Sprintf("quick %d", i)})
		ids = append(ids, sp.RunID)
	}
	var out waitOut
	res := f.call("spawn_wait", map[string]any{"task_ids": ids, "wait_seconds": 120}, &out)
	if res.IsError || !out.Done || len(out.Finished) != 64 || len(out.Running) != 0 {
		t.Fatalf("wait all: done %v, %d finished, %d running: %s", out.Done, len(out.Finished), len(out.Running), firstN(text(res), 300))
	}
	for i, r := range out.Finished {
		if r.TaskID != ids[i] || r.Status != "ok" || r.Text != "quick result" {
			t.Fatalf("finished[%d] = %+v", i, r)
		}
	}
	// any: one quick and two slow runs; it returns with the quick one.
	slow1, slow2 := f.spawn(map[string]any{"task": "slow 1"}), f.spawn(map[string]any{"task": "slow 2"})
	quick := f.spawn(map[string]any{"task": "quick again"})
	res = f.call("spawn_wait", map[string]any{"task_ids": []string{slow1.RunID, quick.RunID, slow2.RunID}, "mode": "any", "wait_seconds": 60}, &out)
	if res.IsError || !out.Done || len(out.Finished) != 1 || out.Finished[0].TaskID != quick.RunID || len(out.Running) != 2 {
		t.Fatalf("wait any: %s", text(res))
	}
	// wait_seconds 0 answers at once; the slow runs are still running.
	res = f.call("spawn_wait", map[string]any{"task_ids": []string{slow1.RunID, slow2.RunID}, "wait_seconds": 0}, &out)
	if res.IsError || out.Done || len(out.Running) != 2 || !strings.Contains(text(res), "still running") {
		t.Fatalf("wait 0: %s", text(res))
	}
	f.call("cancel_spawn", map[string]any{"task_id": slow1.RunID}, nil)
	f.call("cancel_spawn", map[string]any{"task_id": slow2.RunID}, nil)
	// Someone else's run.
	if err := f.st.InsertRun(context.Background(), &store.Run{ID: "foreign-run", Kind: "spawn", ChildKey: "agent:other:subagent:x",
		RequesterKey: "agent:other:main", AgentID: "other"}); err != nil {
		t.Fatal(err)
	}
	f.wantError(f.call("spawn_wait", map[string]any{"task_ids": []string{ids[0], "foreign-run"}}, nil), "spawn task access denied")
	f.wantError(f.call("spawn_wait", map[string]any{"task_ids": []string{}}, nil), "task_ids")
}

// Cancelling a blocking spawn_agent tasks[] call kills every child it
// started.
func TestSpawnAgentTasksCancelKillsAll(t *testing.T) {
	f, _ := newSpawnFixture(t, "max_children_per_agent = 8")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "spawn_agent"
		req.Params.Arguments = map[string]any{"tasks": []string{"slow a", "slow b", "slow c"}}
		_, err := f.c.CallTool(ctx, req)
		errc <- err
	}()
	waitFor(t, "three running children", func() bool {
		runs, _ := f.st.ListRuns(context.Background(), store.RunFilter{States: []string{store.RunRunning}})
		return len(runs) == 3
	})
	cancel()
	<-errc
	waitFor(t, "every child killed", func() bool {
		runs, _ := f.st.ListRuns(context.Background(), store.RunFilter{Requesters: []string{"agent:main:main"}})
		killed := 0
		for _, r := range runs {
			if r.State == store.RunKilled && strings.Contains(r.Note, "cancelled by the client") {
				killed++
			}
		}
		return len(runs) == 3 && killed == 3
	})
}

// From a child agent: an orchestrator fans out two grandchildren with
// tasks[] and reads both results.
func TestSpawnAgentTasksFromChildAgent(t *testing.T) {
	sc, err := provider.ParseScript([]byte(`{"conversations": [
 {"match": "fan-out", "turns": [
   {"tool_calls": [{"name": "spawn_agent", "args": {"tasks": ["leaf one", "leaf two"]}}]},
   {"text": "collected: {{last_tool_result}}"}]},
 {"match": "leaf one", "turns": [{"text": "result one"}]},
 {"match": "leaf two", "turns": [{"text": "result two"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, "max_spawn_depth = 2"), "2025-11-25", map[string]provider.Provider{"script": provider.NewScripted("script", sc, nil)})
	var out struct {
		Status string `json:"status"`
		Text   string `json:"text"`
	}
	res := f.call("spawn_agent", map[string]any{"task": "fan-out please"}, &out)
	if res.IsError || out.Status != "ok" {
		t.Fatalf("orchestrator: %s", text(res))
	}
	if !strings.Contains(out.Text, "2 sub-agents: ok") || !strings.Contains(out.Text, "result one") || !strings.Contains(out.Text, "result two") {
		t.Fatalf("the orchestrator did not collect both results: %s", out.Text)
	}
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// spawn_wait in one server over runs another server (another process on
// the same database) executes: it sees them end through the store.
func TestSpawnWaitAcrossTwoServers(t *testing.T) {
	path := testdb.DSN(t, "shared.db")
	a := budgetFixture(t, path, "")
	b := budgetFixture(t, path, "")
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, a.spawn(map[string]any{"task": fmt.Sprintf("slowish %d", i)}).RunID)
	}
	var out waitOut
	res := b.call("spawn_wait", map[string]any{"task_ids": ids, "wait_seconds": 60}, &out)
	if res.IsError || !out.Done || len(out.Finished) != 4 {
		t.Fatalf("wait across servers: %s", text(res))
	}
	for _, r := range out.Finished {
		if r.Status != "ok" || r.Text != "slow done" {
			t.Fatalf("run %+v", r)
		}
		run, _ := b.st.GetRun(context.Background(), r.TaskID)
		if run.OwnerInstance != a.srv.Runs().Instance() {
			t.Errorf("run %s was executed by %s, not by the server that spawned it", run.ID, run.OwnerInstance)
		}
	}
}
