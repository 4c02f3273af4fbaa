package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// A run created running starts no earlier than the end of the session's
// previous run that its busy check saw ended, even when the clock was read
// before that run ended (the create waited in the writer's queue, or was
// retried): one turn per session holds in the stored times too.
func TestRunStartNotBeforeThePreviousEnd(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000)
	var arm atomic.Pointer[func()]
	ctx := context.Background()
	s, err := Open(ctx, testdb.DSN(t, "sp.db"), &Options{Now: func() time.Time {
		if f := arm.Swap(nil); f != nil {
			// The create has read the clock; before its transaction, the
			// session's running run ends later.
			at := clock.Load()
			(*f)()
			return time.UnixMilli(at)
		}
		return time.UnixMilli(clock.Load())
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	child := "agent:w:subagent:one"
	first := &Run{ID: "r1", Kind: "spawn", ChildKey: child, RequesterKey: "agent:m:main", AgentID: "w", State: RunRunning}
	if err := s.CreateRun(ctx, &Session{Key: child}, nil, first); err != nil {
		t.Fatal(err)
	}
	end := func() {
		clock.Store(2_000)
		if ok, err := s.FinishRun(ctx, "r1", Outcome{State: "ok"}, nil); err != nil || !ok {
			t.Errorf("finish r1: %v %v", ok, err)
		}
	}
	arm.Store(&end)
	second := &Run{ID: "r2", Kind: "send", ChildKey: child, RequesterKey: "agent:m:main", AgentID: "w", State: RunRunning}
	if err := s.CreateRun(ctx, nil, nil, second); err != nil {
		t.Fatal(err)
	}
	r1, err := s.GetRun(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.GetRun(ctx, "r2")
	if err != nil {
		t.Fatal(err)
	}
	if r2.State != RunRunning {
		t.Fatalf("r2 is %s, want running (r1 had ended)", r2.State)
	}
	if r2.StartedAt < r1.EndedAt {
		t.Fatalf("r2 started at %d, before r1 ended at %d", r2.StartedAt, r1.EndedAt)
	}
	if r2.CreatedAt != 1_000 {
		t.Fatalf("r2 created at %d, want 1000 (the call's time)", r2.CreatedAt)
	}
}
