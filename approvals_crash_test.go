package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// A run parked on an approval survives its process being SIGKILLed: the
// next process finds it still input_required (not unknown), lists its
// approval, and approving it there runs the parked call exactly once.
func TestKill9WhileParkedThenApprove(t *testing.T) {
	dir := t.TempDir()
	db := testdb.DSN(t, "sp.db")
	cfg := scriptedConfig(t, dir, `{"conversations": [
		{"match": "park me", "turns": [
			{"tool_calls": [{"name": "task_list", "args": {"action": "create", "list": "k9", "title": "after approval"}}]},
			{"text": "done: {{last_tool_result}}"}]},
		{"turns": [{"text": "fine"}]}]}`,
		"[approval]\nmutate-session = \"elicit\"\n")
	p := startServer(t, "--db", db, "--config", cfg)
	p.send(initMsg)
	p.response(1)
	p.send(callMsg(2, "sessions_spawn", `{"task":"park me"}`))
	runID := p.response(2)["result"].(map[string]any)["structuredContent"].(map[string]any)["runId"].(string)
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := st.GetRun(context.Background(), runID)
		if err == nil && r.State == store.RunInputRequired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run never parked: %+v %v", r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Kill()
	p.wait()

	q := startServer(t, "--db", db, "--config", cfg)
	q.send(initMsg)
	q.response(1)
	if r, _ := st.GetRun(context.Background(), runID); r.State != store.RunInputRequired {
		t.Fatalf("after the kill and a restart the parked run is %s, want input_required", r.State)
	}
	q.send(callMsg(2, "approvals", `{"action":"list"}`))
	list := q.response(2)["result"].(map[string]any)["structuredContent"].(map[string]any)
	pending, _ := list["pending"].([]any)
	if len(pending) != 1 || pending[0].(map[string]any)["run_id"] != runID {
		t.Fatalf("pending approvals after the restart: %v", list)
	}
	id := pending[0].(map[string]any)["id"].(string)
	q.send(callMsg(3, "approvals", fmt.Sprintf(`{"action":"approve","id":%q}`, id)))
	if res := q.response(3)["result"].(map[string]any); res["isError"] == true {
		t.Fatalf("approve: %v", res)
	}
	q.send(callMsg(4, "spawn_result", fmt.Sprintf(`{"task_id":%q,"wait_seconds":30}`, runID)))
	out := q.response(4)["result"].(map[string]any)["structuredContent"].(map[string]any)
	if out["status"] != "ok" {
		t.Fatalf("the approved run: %v", out)
	}
	var n int
	if err := st.DB().QueryRow(`SELECT count(*) FROM tasks WHERE title = 'after approval'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the approved call ran %d times (%v), want once", n, err)
	}
	q.stdin.Close()
	if code := q.wait(); code != 0 {
		t.Fatalf("restarted server exit %d: %s", code, q.stderr)
	}
}
