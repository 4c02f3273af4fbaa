package runtime

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// faults makes the named lifecycle calls of every run fail once each (in
// order of the ops given per call), and counts every call.
type faults struct {
	mu    sync.Mutex
	fail  map[string]int // op → failures left
	calls map[string]int
}

func injectFaults(t *testing.T, fail map[string]int) *faults {
	f := &faults{fail: fail, calls: map[string]int{}}
	lifecycleFaultHook = func(op, id string) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls[op]++
		if f.fail[op] > 0 {
			f.fail[op]--
			return errors.New("injected: " + op + " failed (the database was unreachable)")
		}
		return nil
	}
	t.Cleanup(func() { lifecycleFaultHook = nil })
	return f
}

func (f *faults) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// lifecycleManager is a started manager on a fresh database of the suite's
// backend, and that database's store.
func lifecycleManager(t *testing.T) (*store.Store, *Manager) {
	t.Helper()
	cfg, err := config.Parse([]byte(""), "lifecycle.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(t, "lifecycle.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := NewManager(New(cfg, st, nil))
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return st, m
}

// ended waits (bounded) for run id to end and returns it; a run left
// queued or running fails the test.
func ended(t *testing.T, m *Manager, id string) *store.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runs, err := m.WaitRuns(ctx, []string{id}, false, time.Hour, nil)
	if err != nil || len(runs) != 1 || !store.Terminal(runs[0].State) {
		r, _ := m.st.GetRun(context.Background(), id)
		t.Fatalf("run %s never ended (%v): %+v; the process that owns it gave it up", id, err, r)
	}
	return runs[0]
}

// A failed outcome write (a deadline passed in a long writer queue,
// PostgreSQL out of connections, a batch conflicting past its retries)
// used to be logged and dropped: the run stayed running for ever, its
// owner alive and heartbeating, so no recovery ever touched it (the
// multibench stall with three PostgreSQL instances). The outcome is now
// written again until it commits.
func TestRunOutcomeWrittenAfterAFailedWrite(t *testing.T) {
	f := injectFaults(t, map[string]int{"finish": 2})
	st, m := lifecycleManager(t)
	queueRun(t, st, "r1")
	m.schedule("r1")
	r := ended(t, m, "r1")
	// This test's process has no policy gate: the run fails closed, and
	// that outcome is what had to be recorded.
	if r.State != store.RunError || r.EndedAt == 0 {
		t.Fatalf("run after its outcome write failed twice: state %q ended %d, want error recorded", r.State, r.EndedAt)
	}
	if n := f.count("finish"); n != 3 {
		t.Fatalf("outcome writes: %d, want 3 (two failed, one committed)", n)
	}
}

// A queued run whose claim failed and whose state could not be read
// either (the store unreachable for a moment) used to be let go by its
// goroutine: it stayed queued for ever under a live owner. It is now
// claimed again, and runs once.
func TestQueuedRunClaimedAgainAfterStoreErrors(t *testing.T) {
	f := injectFaults(t, map[string]int{"claim": 2, "state": 2})
	st, m := lifecycleManager(t)
	queueRun(t, st, "q1")
	m.schedule("q1")
	r := ended(t, m, "q1")
	if r.StartedAt == 0 || r.OwnerInstance != m.Instance() {
		t.Fatalf("run after failed claims: %+v, want started by this process", r)
	}
	if n := f.count("claim"); n != 3 {
		t.Fatalf("claims: %d, want 3 (two failed, one claimed)", n)
	}
	if n := f.count("finish"); n != 1 {
		t.Fatalf("outcome writes: %d, want 1 (the run ran once)", n)
	}
}
