package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// A real server is SIGKILLed in the middle of a budgeted run: what the run
// spent before the kill stays recorded, and the restarted server counts it
// against the agent's day budget.
func TestKill9MidBudgetKeepsSpending(t *testing.T) {
	dir := t.TempDir()
	db := testdb.DSN(t, "sp.db")
	cfg := scriptedConfig(t, dir, `{"conversations": [
		{"match": "spend then hang", "turns": [
			{"tool_calls": [{"name": "task_list", "args": {"action": "list_lists"}}], "usage": {"input_tokens": 1500, "output_tokens": 500}},
			{"delay_ms": 600000, "text": "never"}]},
		{"turns": [{"text": "fine", "usage": {"input_tokens": 5000, "output_tokens": 1000}}]}]}`,
		"[agents.defaults.budget]\nday_tokens = 100000\n")
	p := startServer(t, "--db", db, "--config", cfg)
	p.send(initMsg)
	p.response(1)
	p.send(callMsg(2, "sessions_spawn", `{"task":"spend then hang"}`))
	runID := p.response(2)["result"].(map[string]any)["structuredContent"].(map[string]any)["runId"].(string)
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	day := "day:main:" + time.Now().UTC().Format("2006-01-02")
	deadline := time.Now().Add(20 * time.Second)
	for { // the first call's spending is recorded; the second call hangs
		u, err := st.BudgetUsages(context.Background(), day, "run:"+runID)
		if err == nil && u[day].Tokens == 2000 && u["run:"+runID].Tokens == 2000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first call's spending was never recorded: %+v %v", u, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Kill()
	p.wait()

	q := startServer(t, "--db", db, "--config", cfg)
	q.send(initMsg)
	q.response(1)
	q.send(callMsg(2, "spawn_agent", `{"task":"after the crash"}`))
	out := q.response(2)["result"].(map[string]any)["structuredContent"].(map[string]any)
	if out["status"] != "ok" {
		t.Fatalf("after restart: %v", out)
	}
	q.send(callMsg(3, "spawn_status", fmt.Sprintf(`{"task_id":%q}`, out["task_id"])))
	status := q.response(3)["result"].(map[string]any)["structuredContent"].(map[string]any)
	lines, _ := status["budget"].([]any)
	if len(lines) != 1 {
		t.Fatalf("budget lines: %v", status["budget"])
	}
	l := lines[0].(map[string]any)
	if l["scope"] != "day" || l["spent"] != 8000.0 || l["left"] != 92000.0 {
		t.Fatalf("day budget after the crash: %v (want 2000 from the killed run + 6000)", l)
	}
	q.send(callMsg(4, "spawn_status", fmt.Sprintf(`{"task_id":%q}`, runID)))
	if s := q.response(4)["result"].(map[string]any)["structuredContent"].(map[string]any); s["status"] != "unknown" {
		t.Fatalf("killed run: %v", s["status"])
	}
	q.stdin.Close()
	if code := q.wait(); code != 0 {
		t.Fatalf("restarted server exit %d: %s", code, q.stderr)
	}
}
