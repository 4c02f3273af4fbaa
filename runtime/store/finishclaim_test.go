package store

import (
	"context"
	"encoding/json"
	"testing"
)

// FinishRunAndClaim records one run's end and claims the next queued run
// in the same transaction, under the claim's rules: the end comes first
// (so the next run of the same session may start), a run of a busy session
// or one not queued any more is not claimed, and the end is recorded
// whether the claim succeeds or not.
func TestFinishRunAndClaim(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	const req = "agent:m:main"
	add := func(id, child, state string) {
		t.Helper()
		if err := s.CreateRun(ctx, &Session{Key: child}, nil, &Run{ID: id, Kind: "spawn", ChildKey: child, RequesterKey: req, AgentID: "m", State: state}); err != nil {
			t.Fatal(err)
		}
	}
	state := func(id string) string {
		t.Helper()
		r, err := s.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r.State
	}
	add("a1", "agent:m:subagent:a", RunRunning)
	add("a2", "agent:m:subagent:a", RunQueued) // same session as a1
	add("b1", "agent:m:subagent:b", RunRunning)
	add("c1", "agent:m:subagent:c", RunRunning)
	add("c2", "agent:m:subagent:c", RunQueued) // its session stays busy (c1)

	var started []string
	start := func(opts json.RawMessage) ([]Message, json.RawMessage, error) {
		started = append(started, string(opts))
		return nil, nil, nil
	}
	// a1 ends and a2, of the same session, starts in that transaction.
	done, claimed, err := s.FinishRunAndClaim(ctx, "a1", Outcome{State: RunOK, SessionStatus: "done"}, &Announce{RequesterKey: req, Status: RunOK, Body: "a1"},
		&NextClaim{RunID: "a2", Instance: "me", PID: 7, Start: start})
	if err != nil || !done || claimed == nil {
		t.Fatalf("finish a1, claim a2: done %v claimed %v err %v", done, claimed, err)
	}
	r, _ := s.GetRun(ctx, "a2")
	if claimed.ID != "a2" || claimed.State != RunRunning || claimed.StartedAt != r.StartedAt || claimed.OwnerInstance != "me" {
		t.Fatalf("the claimed run as returned: %+v, stored: %+v", claimed, r)
	}
	if r.State != RunRunning || r.OwnerInstance != "me" || r.OwnerPID != 7 || r.StartedAt == 0 || len(started) != 1 {
		t.Fatalf("a2 after the hand-off: %+v (start called %d times)", r, len(started))
	}
	if sess, _ := s.GetSession(ctx, "agent:m:subagent:a"); sess.Status != "running" {
		t.Fatalf("a's session after a2 started: %q, want running", sess.Status)
	}
	if a, err := s.GetAnnounce(ctx, "a1"); err != nil || a.Body != "a1" {
		t.Fatalf("a1's announce: %+v %v", a, err)
	}
	// b1 ends; c2's session is busy (c1 runs): not claimed, b1 still ended.
	done, claimed, err = s.FinishRunAndClaim(ctx, "b1", Outcome{State: RunOK}, nil, &NextClaim{RunID: "c2", Instance: "me", PID: 7, Start: start})
	if err != nil || !done || claimed != nil {
		t.Fatalf("finish b1, claim c2 (busy session): done %v claimed %v err %v", done, claimed, err)
	}
	if got := state("c2"); got != RunQueued {
		t.Fatalf("c2: %q, want queued", got)
	}
	// c1 ends (a second time: no effect) and a2, running already, is not
	// claimed twice.
	if _, err := s.KillRun(ctx, "c1", "stop", nil); err != nil {
		t.Fatal(err)
	}
	done, claimed, err = s.FinishRunAndClaim(ctx, "c1", Outcome{State: RunOK}, nil, &NextClaim{RunID: "a2", Instance: "other", PID: 8, Start: start})
	if err != nil || done || claimed != nil {
		t.Fatalf("finish c1 again, claim a2 again: done %v claimed %v err %v", done, claimed, err)
	}
	if got := state("c1"); got != RunKilled {
		t.Fatalf("c1: %q, want killed (a kill is final)", got)
	}
	if r, _ := s.GetRun(ctx, "a2"); r.OwnerInstance != "me" || len(started) != 1 {
		t.Fatalf("a2 claimed twice: %+v", r)
	}
}
