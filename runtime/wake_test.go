package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// hosts opens one database twice and a manager on the second Store: what
// the first commits is "another host".
func hosts(t *testing.T) (a *store.Store, m *Manager) {
	t.Helper()
	if !testdb.Postgres() {
		t.Skip("cross-host wake-ups are PostgreSQL's LISTEN/NOTIFY: set " + testdb.Env + " to run it")
	}
	cfg, err := config.Parse([]byte(""), "wake.toml")
	if err != nil {
		t.Fatal(err)
	}
	dsn := testdb.DSN(t, "")
	ctx := context.Background()
	a, err = store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, NewManager(New(cfg, b, nil))
}

// noPoll makes the fallback poll never come within the test, so a waiter
// that returns was woken by the notification.
func noPoll(t *testing.T) {
	old := remotePoll
	remotePoll = time.Hour
	t.Cleanup(func() { remotePoll = old })
}

func queueRun(t *testing.T, st *store.Store, id string) {
	t.Helper()
	r := &store.Run{ID: id, ChildKey: "agent:w:subagent:" + id, RequesterKey: "agent:main:main", AgentID: "w"}
	if err := st.CreateRun(context.Background(), &store.Session{Key: r.ChildKey}, nil, r); err != nil {
		t.Fatal(err)
	}
}

// A waiter in one process returns as soon as another process ends the
// run, not at its next poll.
func TestWaitRunsWokenByAnotherHost(t *testing.T) {
	noPoll(t)
	a, m := hosts(t)
	queueRun(t, a, "r1")
	queueRun(t, a, "r2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a bound, not the expectation
	defer cancel()
	type res struct {
		runs []*store.Run
		err  error
	}
	done := make(chan res, 1)
	progress := make(chan int, 4)
	go func() {
		runs, err := m.WaitRuns(ctx, []string{"r1", "r2"}, false, time.Hour, func(ended, _ int) { progress <- ended })
		done <- res{runs, err}
	}()
	if n := <-progress; n != 0 {
		t.Fatalf("first progress %d, want 0 ended", n)
	}
	for _, id := range []string{"r1", "r2"} {
		if ok, err := a.FinishRun(context.Background(), id, store.Outcome{State: store.RunOK}, nil); err != nil || !ok {
			t.Fatalf("finish %s: %v %v", id, ok, err)
		}
	}
	r := <-done
	if r.err != nil || ctx.Err() != nil {
		t.Fatalf("WaitRuns: %v (ctx %v): it was not woken by the other host's commits", r.err, ctx.Err())
	}
	for _, run := range r.runs {
		if run.State != store.RunOK {
			t.Fatalf("run %s is %s, want ok", run.ID, run.State)
		}
	}
}

// Wait (spawn_wait, sessions_send's wait) too.
func TestWaitWokenByAnotherHost(t *testing.T) {
	noPoll(t)
	a, m := hosts(t)
	queueRun(t, a, "r1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	woke := m.st.Wake(store.TopicRuns)
	done := make(chan *store.Run, 1)
	go func() {
		run, _ := m.Wait(ctx, "r1", time.Hour)
		done <- run
	}()
	if ok, err := a.KillRun(context.Background(), "r1", "killed elsewhere", nil); err != nil || !ok {
		t.Fatalf("kill: %v %v", ok, err)
	}
	<-woke // the notification reached this process
	run := <-done
	if ctx.Err() != nil || run == nil || run.State != store.RunKilled {
		t.Fatalf("Wait returned %+v (ctx %v), want the run killed by the other host", run, ctx.Err())
	}
}

// A queued turn waiting for its session starts as soon as the turn running
// in another process ends, not at its next poll.
func TestQueuedTurnWokenWhenAnotherHostFreesItsSession(t *testing.T) {
	noPoll(t)
	a, m := hosts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const child = "agent:w:subagent:busy"
	// Host A is alive (recovery leaves its runs alone) and owns both turns.
	if err := a.RegisterInstance(ctx, store.Instance{ID: "host-a", PID: 1, Host: "host-a.example"}); err != nil {
		t.Fatal(err)
	}
	// ...for the whole test, however slow the machine: recovery must not
	// adopt t2 (which would start it without any wake-up).
	if _, err := a.DB().ExecContext(ctx, `UPDATE instances SET heartbeat_at = heartbeat_at + 3600000 WHERE id = 'host-a'`); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"t1", "t2"} {
		r := &store.Run{ID: id, Kind: "send", ChildKey: child, RequesterKey: "agent:main:main", AgentID: "w", OwnerInstance: "host-a"}
		if err := a.CreateRun(ctx, &store.Session{Key: child}, nil, r); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := a.ClaimRun(ctx, "t1", "host-a", 1); err != nil || !ok {
		t.Fatalf("host A claims t1: %v %v", ok, err)
	}
	waiting := make(chan string, 4)
	busyWaitHook = func(id string) { waiting <- id }
	t.Cleanup(func() { busyWaitHook = nil })
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	m.schedule("t2")
	select {
	case id := <-waiting: // t2 found its session busy and waits
		if id != "t2" {
			t.Fatalf("waiting run %s, want t2", id)
		}
	case <-ctx.Done():
		t.Fatal("t2 never tried its busy session")
	}
	if ok, err := a.FinishRun(ctx, "t1", store.Outcome{State: store.RunOK}, nil); err != nil || !ok {
		t.Fatalf("host A ends t1: %v %v", ok, err)
	}
	// t2 runs here now (and fails at once: this test's process has no
	// policy gate), so it ends; WaitRuns returns when it has.
	runs, err := m.WaitRuns(ctx, []string{"t2"}, false, time.Hour, nil)
	if err != nil || ctx.Err() != nil || len(runs) != 1 || !store.Terminal(runs[0].State) || runs[0].StartedAt == 0 {
		t.Fatalf("t2 after t1 ended elsewhere: %+v %v (ctx %v): it was not woken", runs, err, ctx.Err())
	}
}

// An announce written on another host reaches this process's notifier at
// once, and a run of this process killed on another host is cancelled at
// once, not at the next heartbeat.
func TestWatchRemoteAnnounceAndKill(t *testing.T) {
	noPoll(t)
	old := heartbeatEvery
	heartbeatEvery = time.Hour
	t.Cleanup(func() { heartbeatEvery = old })
	a, m := hosts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const req = "agent:main:main"
	if _, err := a.EnsureSession(ctx, store.Session{Key: req}); err != nil {
		t.Fatal(err)
	}
	notified := make(chan string, 8)
	m.SetNotifier(func(key string) { notified <- key })
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// This process learns that req has nothing pending (the in-memory
	// signal then hides announces until something moves it).
	if anns, err := m.st.RecordCall(ctx, nil, req, false); err != nil || len(anns) != 0 {
		t.Fatalf("nothing pending: %v %v", anns, err)
	}
	queueRun(t, a, "r1")
	if ok, err := a.FinishRun(ctx, "r1", store.Outcome{State: store.RunOK}, &store.Announce{RequesterKey: req, Status: "ok", Body: "done"}); err != nil || !ok {
		t.Fatalf("finish: %v %v", ok, err)
	}
	select {
	case <-notified:
	case <-ctx.Done():
		t.Fatal("the announce written on host A did not reach this process's notifier")
	}
	anns, err := m.st.RecordCall(ctx, nil, req, false)
	if err != nil || len(anns) != 1 || anns[0].RunID != "r1" {
		t.Fatalf("after the wake-up: %v %v, want r1's announce", anns, err)
	}

	// A run active here, killed on host A.
	queueRun(t, a, "r2")
	runCtx, runCancel := context.WithCancelCause(ctx)
	defer runCancel(nil)
	m.mu.Lock()
	m.active["r2"] = &activeRun{cancel: runCancel, done: make(chan struct{})}
	m.mu.Unlock()
	if ok, err := a.KillRun(ctx, "r2", "killed on host A", nil); err != nil || !ok {
		t.Fatalf("kill: %v %v", ok, err)
	}
	<-runCtx.Done()
	if ctx.Err() != nil || context.Cause(runCtx) != ErrKilled {
		t.Fatalf("the run here ended with %v (ctx %v), want ErrKilled from the remote kill", context.Cause(runCtx), ctx.Err())
	}
	m.mu.Lock()
	delete(m.active, "r2")
	m.mu.Unlock()
}
