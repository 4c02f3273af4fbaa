package mcp

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// A child whose task_list create needs an "elicit" approval: nobody can be
// asked inside a background run, so it parks.
const approvalScript = `{"conversations": [
 {"match": "park-me", "turns": [
   {"tool_calls": [{"name": "task_list", "args": {"action": "create", "list": "parked", "title": "from the child"}}]},
   {"text": "after: {{last_tool_result}}"}]},
 {"turns": [{"text": "ok"}]}]}`

func approvalConfig() string {
	return fmt.Sprintf(spawnConfig, "") + `
[approval]
mutate-session = "elicit"
park_minutes = "60"
`
}

func approvalProviders(t *testing.T) map[string]provider.Provider {
	t.Helper()
	sc, err := provider.ParseScript([]byte(approvalScript))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]provider.Provider{"script": provider.NewScripted("script", sc, nil)}
}

type approvalsOut struct {
	Pending []struct {
		ID    string `json:"id"`
		RunID string `json:"run_id"`
		Tool  string `json:"tool"`
	} `json:"pending"`
	State string `json:"state"`
}

// parkedSpawn spawns the child and waits until its run parked.
func parkedSpawn(t *testing.T, f *fixture) string {
	t.Helper()
	var out struct {
		RunID string `json:"runId"`
	}
	if res := f.call("sessions_spawn", map[string]any{"task": "park-me please"}, &out); res.IsError {
		t.Fatalf("spawn: %s", text(res))
	}
	waitFor(t, "the run to park", func() bool {
		r, err := f.st.GetRun(context.Background(), out.RunID)
		return err == nil && r.State == store.RunInputRequired
	})
	return out.RunID
}

func pendingOf(t *testing.T, f *fixture) approvalsOut {
	t.Helper()
	var out approvalsOut
	if res := f.call("approvals", map[string]any{"action": "list"}, &out); res.IsError {
		t.Fatalf("approvals list: %s", text(res))
	}
	return out
}

func tasksIn(t *testing.T, f *fixture, list string) int {
	t.Helper()
	var n int
	if err := f.st.DB().QueryRow(`SELECT count(*) FROM tasks WHERE list = ?`, list).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestApprovalParksThenApproveRunsTheCallOnce(t *testing.T) {
	f := newFixtureFull(t, approvalConfig(), "2025-11-25", approvalProviders(t))
	id := parkedSpawn(t, f)
	sess, _ := f.st.GetRun(context.Background(), id)
	if s, err := f.st.GetSession(context.Background(), sess.ChildKey); err != nil || s.Status != store.RunInputRequired {
		t.Fatalf("child session status: %+v %v", s, err)
	}
	if n := tasksIn(t, f, "parked"); n != 0 {
		t.Fatalf("the parked call ran before approval: %d tasks", n)
	}
	p := pendingOf(t, f)
	if len(p.Pending) != 1 || p.Pending[0].RunID != id || p.Pending[0].Tool != "task_list" {
		t.Fatalf("pending: %+v", p)
	}
	var dec approvalsOut
	if res := f.call("approvals", map[string]any{"action": "approve", "id": p.Pending[0].ID}, &dec); res.IsError || dec.State != "approved" {
		t.Fatalf("approve: %s", text(res))
	}
	if res := f.call("approvals", map[string]any{"action": "approve", "id": p.Pending[0].ID}, nil); !res.IsError || !strings.Contains(text(res), "already approved") {
		t.Fatalf("second approve: %s", text(res))
	}
	run := f.result(id, 30)
	if run.Status != "ok" {
		t.Fatalf("run after approval: %s %s", run.Status, run.Note)
	}
	if got := toolResultOf(t, f, id); strings.Contains(got, "forbidden") || strings.Contains(got, "error") {
		t.Fatalf("the model saw: %s", got)
	}
	if n := tasksIn(t, f, "parked"); n != 1 {
		t.Fatalf("the approved call ran %d times, want once", n)
	}
	if p := pendingOf(t, f); len(p.Pending) != 0 {
		t.Fatalf("still pending: %+v", p)
	}
}

func TestApprovalDenyShowsTheRefusalToTheModel(t *testing.T) {
	f := newFixtureFull(t, approvalConfig(), "2025-11-25", approvalProviders(t))
	id := parkedSpawn(t, f)
	p := pendingOf(t, f)
	if len(p.Pending) != 1 {
		t.Fatalf("pending: %+v", p)
	}
	if res := f.call("approvals", map[string]any{"action": "deny", "id": p.Pending[0].ID}, nil); res.IsError {
		t.Fatalf("deny: %s", text(res))
	}
	run := f.result(id, 30)
	if run.Status != "ok" {
		t.Fatalf("run after deny: %s %s", run.Status, run.Note)
	}
	if got := toolResultOf(t, f, id); !strings.Contains(got, "denied by "+f.srv.Caller().Key) {
		t.Fatalf("the model saw: %s", got)
	}
	if n := tasksIn(t, f, "parked"); n != 0 {
		t.Fatalf("a denied call ran: %d tasks", n)
	}
}

func TestApprovalExpiresIntoADenial(t *testing.T) {
	f := newFixtureFull(t, approvalConfig(), "2025-11-25", approvalProviders(t))
	id := parkedSpawn(t, f)
	// Nobody decides in time: the heartbeat's sweep denies it.
	if _, err := f.st.DB().Exec(`UPDATE approvals SET expires_at = 0 WHERE run_id = ?`, id); err != nil {
		t.Fatal(err)
	}
	run := f.result(id, 30)
	if run.Status != "ok" {
		t.Fatalf("run after expiry: %s %s", run.Status, run.Note)
	}
	if got := toolResultOf(t, f, id); !strings.Contains(got, "nobody decided") {
		t.Fatalf("the model saw: %s", got)
	}
	var state string
	if err := f.st.DB().QueryRow(`SELECT state FROM approvals WHERE run_id = ?`, id).Scan(&state); err != nil || state != "expired" {
		t.Fatalf("approval state %q %v", state, err)
	}
}

func TestApprovalSurvivesRestartAndIsDecidedInAnotherServer(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	f := newFixtureAt(t, path, approvalConfig(), "2025-11-25", approvalProviders(t))
	id := parkedSpawn(t, f)
	f.srv.Close()
	f.st.Close()

	// A new server on the same database: the run stays parked (not unknown).
	g := newFixtureAt(t, path, approvalConfig(), "2025-11-25", approvalProviders(t))
	// A second server running at the same time on the same database.
	h := newFixtureAt(t, path, approvalConfig(), "2025-11-25", approvalProviders(t))
	if r, _ := g.st.GetRun(context.Background(), id); r.State != store.RunInputRequired {
		t.Fatalf("after restart: %s (%s)", r.State, r.Note)
	}
	p := pendingOf(t, h)
	if len(p.Pending) != 1 {
		t.Fatalf("pending in the second server: %+v", p)
	}
	if res := h.call("approvals", map[string]any{"action": "approve", "id": p.Pending[0].ID}, nil); res.IsError {
		t.Fatalf("approve: %s", text(res))
	}
	run := g.result(id, 30)
	if run.Status != "ok" {
		t.Fatalf("run: %s %s", run.Status, run.Note)
	}
	if n := tasksIn(t, g, "parked"); n != 1 {
		t.Fatalf("the approved call ran %d times, want once", n)
	}
}

func TestApprovalsOnlyForTheRunsOwner(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	f := newFixtureAt(t, path, approvalConfig(), "2025-11-25", approvalProviders(t))
	// Another principal on the same database: sees nothing, decides nothing.
	other := newFixtureAt(t, path, approvalConfig()+"\n[mcp]\nsession = \"agent:main:other\"\n", "2025-11-25", approvalProviders(t))
	mine, theirs := &notes{}, &notes{}
	f.c.OnNotification(mine.add)
	other.c.OnNotification(theirs.add)
	other.call("sessions_list", nil, nil) // its connection is known to its server
	id := parkedSpawn(t, f)
	// The requester is told (a sessionplane.approval notice naming the id).
	waitFor(t, "the approval notice", func() bool {
		return strings.Contains(mine.text(), "sessionplane.approval") && strings.Contains(mine.text(), id)
	})
	if p := pendingOf(t, other); len(p.Pending) != 0 {
		t.Fatalf("another principal sees: %+v", p)
	}
	p := pendingOf(t, f)
	if len(p.Pending) != 1 {
		t.Fatalf("pending: %+v", p)
	}
	if res := other.call("approvals", map[string]any{"action": "approve", "id": p.Pending[0].ID}, nil); !res.IsError || !strings.Contains(text(res), "no approval") {
		t.Fatalf("another principal approved: %s", text(res))
	}
	if r, _ := f.st.GetRun(context.Background(), id); r.State != store.RunInputRequired {
		t.Fatalf("run %s", r.State)
	}
	if strings.Contains(theirs.text(), "sessionplane.approval") {
		t.Fatalf("another principal was told: %s", theirs.text())
	}
}

func TestParkedRunCanBeKilled(t *testing.T) {
	f := newFixtureFull(t, approvalConfig(), "2025-11-25", approvalProviders(t))
	id := parkedSpawn(t, f)
	if res := f.call("cancel_spawn", map[string]any{"task_id": id}, nil); res.IsError {
		t.Fatalf("cancel: %s", text(res))
	}
	if r, _ := f.st.GetRun(context.Background(), id); r.State != store.RunKilled {
		t.Fatalf("run %s", r.State)
	}
	if p := pendingOf(t, f); len(p.Pending) != 0 {
		t.Fatalf("a killed run's approval is still listed: %+v", p)
	}
}

// The run's own timeout pauses while parked: what it had left is stored
// with the run when it parks, and the resumed execution gets that much.
func TestParkedRunKeepsTheTimeoutItHadLeft(t *testing.T) {
	f := newFixtureFull(t, approvalConfig(), "2025-11-25", approvalProviders(t))
	var out struct {
		RunID string `json:"runId"`
	}
	if res := f.call("sessions_spawn", map[string]any{"task": "park-me with a timeout", "runTimeoutSeconds": 600}, &out); res.IsError {
		t.Fatalf("spawn: %s", text(res))
	}
	waitFor(t, "the run to park", func() bool {
		r, err := f.st.GetRun(context.Background(), out.RunID)
		return err == nil && r.State == store.RunInputRequired
	})
	r, _ := f.st.GetRun(context.Background(), out.RunID)
	if r.TimeoutMS <= 0 || r.TimeoutMS > 600_000 {
		t.Fatalf("timeout left when parked: %d ms (want in (0, 600000])", r.TimeoutMS)
	}
	p := pendingOf(t, f)
	if len(p.Pending) != 1 {
		t.Fatalf("pending: %+v", p)
	}
	if res := f.call("approvals", map[string]any{"action": "approve", "id": p.Pending[0].ID}, nil); res.IsError {
		t.Fatalf("approve: %s", text(res))
	}
	if run := f.result(out.RunID, 30); run.Status != "ok" {
		t.Fatalf("run: %s %s", run.Status, run.Note)
	}
}

// A requester whose client supports elicitation is asked at once when its
// child parks: accepting with approve=true resumes the run (the call runs
// once), declining denies it (the model sees the refusal). No approvals
// call is needed either way.
func TestParkedApprovalAskedByElicitation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(mcp.ElicitationRequest) (*mcp.ElicitationResult, error)
		tasks  int
	}{
		{"accept", answer(mcp.ElicitationResponseActionAccept, map[string]any{"approve": true}), 1},
		{"decline", answer(mcp.ElicitationResponseActionDecline, nil), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el := &elicitor{respond: tc.answer}
			// The spawn itself needs no approval here: the only question is the parked call's.
			f := newFixtureFull(t, approvalConfig()+"spawn-subagent = \"none\"\n", "2025-11-25", approvalProviders(t), client.WithElicitationHandler(el))
			var out struct {
				RunID string `json:"runId"`
			}
			if res := f.call("sessions_spawn", map[string]any{"task": "park-me please"}, &out); res.IsError {
				t.Fatalf("spawn: %s", text(res))
			}
			run := f.result(out.RunID, 30)
			if run.Status != "ok" {
				t.Fatalf("run after the elicitation: %s %s", run.Status, run.Note)
			}
			if reqs := el.requests(); len(reqs) != 1 || !strings.Contains(reqs[0].Params.Message, "task_list") {
				t.Fatalf("elicitation requests: %+v", reqs)
			}
			if n := tasksIn(t, f, "parked"); n != tc.tasks {
				t.Fatalf("the parked call ran %d times, want %d", n, tc.tasks)
			}
			got := toolResultOf(t, f, out.RunID)
			if denied := strings.Contains(got, "denied"); denied != (tc.tasks == 0) {
				t.Fatalf("the model saw: %s", got)
			}
			if p := pendingOf(t, f); len(p.Pending) != 0 {
				t.Fatalf("still pending: %+v", p)
			}
		})
	}
}
