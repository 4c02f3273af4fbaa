package store

import (
	"context"
	"errors"
	"testing"
)

// activeCounts returns, per requester, the kept count (run_children) and
// the real one (its queued or running spawns).
func activeCounts(t *testing.T, s *Store) (kept, real map[string]int) {
	t.Helper()
	ctx := context.Background()
	read := func(q string) map[string]int {
		rows, err := s.DB().QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]int{}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				t.Fatal(err)
			}
			out[k] = n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	kept = read(`SELECT requester_key, active FROM run_children WHERE active <> 0`)
	real = read(`SELECT requester_key, count(*) FROM runs WHERE kind = 'spawn' AND state IN ('queued', 'running') GROUP BY requester_key`)
	return kept, real
}

// checkActive fails unless the kept count of every requester equals the
// real one, and the real one is want (requester → count).
func checkActive(t *testing.T, s *Store, step string, want map[string]int) {
	t.Helper()
	kept, real := activeCounts(t, s)
	if len(kept) != len(real) {
		t.Fatalf("after %s: kept counts %v, real %v", step, kept, real)
	}
	for k, n := range real {
		if kept[k] != n {
			t.Fatalf("after %s: kept counts %v, real %v", step, kept, real)
		}
	}
	for k, n := range want {
		if real[k] != n {
			t.Fatalf("after %s: %s has %d active children, want %d (all: %v)", step, k, real[k], n, real)
		}
		if got, err := s.ActiveChildren(context.Background(), k); err != nil || got != n {
			t.Fatalf("after %s: ActiveChildren(%s) = %d (%v), want %d", step, k, got, err, n)
		}
	}
}

// The per-requester count of active spawns that max_children_per_agent
// reads (run_children, kept by triggers on runs) equals the real count
// after every path that creates a run or moves one in or out of queued or
// running: create (queued, running, fork, refused), claim, finish with a
// claim, kill, park for an approval, requeue on the decision, adoption,
// recovery's unknown, archive, and runs that are not spawns.
func TestActiveChildrenCountKeptOnEveryPath(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	const a, b = "agent:main:main", "agent:main:other"
	spawn := func(id, req, state string, limit int) error {
		r := &Run{ID: id, Kind: "spawn", ChildKey: "agent:w:subagent:" + id, RequesterKey: req, AgentID: "w", State: state, MaxActiveSiblings: limit}
		return s.CreateRun(ctx, &Session{Key: r.ChildKey, AgentID: "w"}, []Message{{SessionKey: r.ChildKey, Role: RoleUser, Trust: TrustUser, Content: Content{Text: "task " + id}}}, r)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(spawn("r1", a, RunQueued, 3))
	must(spawn("r2", a, RunRunning, 3))
	must(spawn("r3", b, RunQueued, 0))
	checkActive(t, s, "create queued and running", map[string]int{a: 2, b: 1})
	must(spawn("r4", a, RunQueued, 3))
	var le *LimitError
	if err := spawn("r5", a, RunQueued, 3); !errors.As(err, &le) || le.Active != 3 {
		t.Fatalf("a fourth child over a limit of 3: %v, want a LimitError counting 3", err)
	}
	checkActive(t, s, "a refused create", map[string]int{a: 3, b: 1})

	// Runs that are not spawns do not count.
	send := &Run{ID: "s1", Kind: "send", ChildKey: "agent:w:subagent:r1", RequesterKey: a, AgentID: "w"}
	must(s.CreateRun(ctx, nil, nil, send))
	cron := &Run{ID: "c1", Kind: "cron", ChildKey: "cron:j1", RequesterKey: a, AgentID: "w", State: RunRunning}
	must(s.CreateRun(ctx, &Session{Key: "cron:j1", AgentID: "w"}, nil, cron))
	checkActive(t, s, "a send and a cron run", map[string]int{a: 3})

	// A spawn into a fork of a session.
	fork := &Run{ID: "f1", Kind: "spawn", ChildKey: "agent:w:subagent:f1", RequesterKey: b, AgentID: "w"}
	must(s.CreateRun(ctx, &Session{Key: fork.ChildKey, AgentID: "w", ForkedFrom: "agent:w:subagent:r3"}, nil, fork))
	checkActive(t, s, "a forked spawn", map[string]int{b: 2})

	if ok, err := s.ClaimRun(ctx, "r1", "i1", 1); err != nil || !ok {
		t.Fatalf("claim r1: %v %v", ok, err)
	}
	checkActive(t, s, "claim", map[string]int{a: 3})
	if ok, err := s.AdoptRun(ctx, "r4", "", "i2", 2); err != nil {
		t.Fatalf("adopt r4: %v %v", ok, err)
	}
	checkActive(t, s, "adopt", map[string]int{a: 3})

	done, claimed, err := s.FinishRunAndClaim(ctx, "r2", Outcome{State: RunOK, ResultText: "done", SessionStatus: RunOK},
		&Announce{RequesterKey: a, Status: RunOK, Body: "r2 done"}, &NextClaim{RunID: "r4", Instance: "i1", PID: 1})
	if err != nil || !done || claimed == nil {
		t.Fatalf("finish r2 and claim r4: %v %v %v", done, claimed, err)
	}
	checkActive(t, s, "finish and claim", map[string]int{a: 2})
	if again, _, err := s.FinishRunAndClaim(ctx, "r2", Outcome{State: RunError}, nil, nil); err != nil || again {
		t.Fatalf("a second end of r2: %v %v", again, err)
	}
	checkActive(t, s, "a second end (refused)", map[string]int{a: 2})

	if ok, err := s.KillRun(ctx, "r3", "killed", nil); err != nil || !ok {
		t.Fatalf("kill r3: %v %v", ok, err)
	}
	checkActive(t, s, "kill of a queued run", map[string]int{b: 1})

	// Parked for an approval: not active; requeued by the decision: active.
	if ok, err := s.ParkRun(ctx, Outcome{Note: "waiting"}, 1000, &Approval{ID: "ap1", RunID: "r1", Tool: "t", RequesterKey: a}); err != nil || !ok {
		t.Fatalf("park r1: %v %v", ok, err)
	}
	checkActive(t, s, "park", map[string]int{a: 1})
	if ok, err := s.DecideApproval(ctx, "ap1", ApprovalApproved, "me", "i1", 1); err != nil || !ok {
		t.Fatalf("decide ap1: %v %v", ok, err)
	}
	checkActive(t, s, "requeue on the decision", map[string]int{a: 2})
	if ok, err := s.ClaimRun(ctx, "r1", "i1", 1); err != nil || !ok {
		t.Fatalf("claim r1 again: %v %v", ok, err)
	}
	if ok, err := s.ParkRun(ctx, Outcome{Note: "waiting"}, 1000, &Approval{ID: "ap2", RunID: "r1", Tool: "t", RequesterKey: a}); err != nil || !ok {
		t.Fatalf("park r1 again: %v %v", ok, err)
	}
	if ok, err := s.KillRun(ctx, "r1", "killed while parked", nil); err != nil || !ok {
		t.Fatalf("kill parked r1: %v %v", ok, err)
	}
	checkActive(t, s, "kill of a parked run", map[string]int{a: 1})

	// Recovery of a dead owner's run: it ends unknown, as the runtime's
	// recovery writes it.
	if ok, err := s.FinishRun(ctx, "r4", Outcome{State: RunUnknown, Note: "owner died", SessionStatus: RunUnknown},
		&Announce{RequesterKey: a, Status: RunUnknown, Body: "r4 unknown"}); err != nil || !ok {
		t.Fatalf("recover r4: %v %v", ok, err)
	}
	checkActive(t, s, "recovery", map[string]int{a: 0})
	must(s.Archive(ctx, "agent:w:subagent:r4"))
	checkActive(t, s, "archive", map[string]int{a: 0, b: 1})
	must(spawn("r6", a, RunQueued, 1))
	checkActive(t, s, "a spawn after all ended", map[string]int{a: 1})
}
