package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// The cross-host contract: two Stores on one database (two processes on
// one SQLite file, or two hosts on one PostgreSQL database) racing for the
// same work. Each race is decided in a write transaction, so exactly one
// side wins, whichever backend.

// twoHosts opens one new database twice.
func twoHosts(t *testing.T) (a, b *Store) {
	t.Helper()
	dsn := testdb.DSN(t, "hosts.db")
	return openTest(t, dsn), openTest(t, dsn)
}

// race runs fn(i, store) n times at once, alternating the two stores.
func race(n int, a, b *Store, fn func(i int, s *Store)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Add(1)
		go func(i int, st *Store) {
			defer wg.Done()
			<-start
			fn(i, st)
		}(i, st)
	}
	close(start)
	wg.Wait()
}

func TestTwoHostsClaimRunOnce(t *testing.T) {
	a, b := twoHosts(t)
	ctx := context.Background()
	const runs = 12
	for i := 0; i < runs; i++ {
		r := &Run{ID: fmt.Sprintf("run-%02d", i), ChildKey: fmt.Sprintf("agent:w:subagent:%d", i), RequesterKey: "agent:main:main", AgentID: "w"}
		if err := a.CreateRun(ctx, &Session{Key: r.ChildKey}, nil, r); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	won := map[string][]string{}
	// Four claimers per run, two per host.
	race(runs*4, a, b, func(i int, s *Store) {
		id := fmt.Sprintf("run-%02d", i/4)
		host := "A"
		if s == b {
			host = "B"
		}
		ok, err := s.ClaimRun(ctx, id, host, 1)
		if err != nil {
			t.Errorf("claim %s on %s: %v", id, host, err)
			return
		}
		if ok {
			mu.Lock()
			won[id] = append(won[id], host)
			mu.Unlock()
		}
	})
	for i := 0; i < runs; i++ {
		id := fmt.Sprintf("run-%02d", i)
		if len(won[id]) != 1 {
			t.Errorf("%s claimed %d times (%v), want exactly once", id, len(won[id]), won[id])
		}
		r, err := b.GetRun(ctx, id)
		if err != nil || r.State != RunRunning || len(won[id]) == 1 && r.OwnerInstance != won[id][0] {
			t.Errorf("%s: %+v %v, want running, owned by the winner %v", id, r, err, won[id])
		}
	}
}

// Queued turns of one session run one at a time, oldest first, whichever
// host claims them.
func TestTwoHostsFIFOPerSession(t *testing.T) {
	a, b := twoHosts(t)
	ctx := context.Background()
	const child = "agent:w:subagent:fifo"
	const turns = 6
	for i := 0; i < turns; i++ {
		r := &Run{ID: fmt.Sprintf("turn-%02d", i), Kind: "send", ChildKey: child, RequesterKey: "agent:main:main", AgentID: "w"}
		if err := a.CreateRun(ctx, &Session{Key: child}, nil, r); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu    sync.Mutex
		order []string
		done  atomic.Int32
	)
	// Two workers per host, each trying every queued turn in reverse order
	// (newest first: the wrong order, so FIFO must come from the claim).
	race(4, a, b, func(w int, s *Store) {
		for attempt := 0; done.Load() < turns && attempt < 10000; attempt++ {
			for i := turns - 1; i >= 0; i-- {
				id := fmt.Sprintf("turn-%02d", i)
				ok, err := s.ClaimRun(ctx, id, fmt.Sprintf("w%d", w), w)
				if err != nil {
					t.Errorf("claim %s: %v", id, err)
					return
				}
				if !ok {
					continue
				}
				var running int
				if err := s.QueryRow(ctx, `SELECT count(*) FROM runs WHERE child_key = ? AND state = 'running'`, child).Scan(&running); err != nil || running != 1 {
					t.Errorf("%s claimed: %d turns of the session running (%v), want only it", id, running, err)
				}
				mu.Lock()
				order = append(order, id)
				mu.Unlock()
				if ok, err := s.FinishRun(ctx, id, Outcome{State: RunOK}, nil); err != nil || !ok {
					t.Errorf("finish %s: %v %v", id, ok, err)
				}
				done.Add(1)
			}
		}
	})
	want := make([]string, turns)
	for i := range want {
		want[i] = fmt.Sprintf("turn-%02d", i)
	}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("turns ran in order %v, want %v", order, want)
	}
}

// Every announce is handed out once, though both hosts claim at once.
func TestTwoHostsAnnounceOnce(t *testing.T) {
	a, b := twoHosts(t)
	ctx := context.Background()
	const req = "agent:main:main"
	if _, err := a.EnsureSession(ctx, Session{Key: req}); err != nil {
		t.Fatal(err)
	}
	const runs = 10
	var got sync.Map
	var claimed atomic.Int32
	var mu sync.Mutex
	var ids []string
	// Runs finish on both hosts while both hosts claim.
	race(runs*3, a, b, func(i int, s *Store) {
		if i%3 == 0 {
			id := fmt.Sprintf("ann-%02d", i/3)
			r := &Run{ID: id, ChildKey: "agent:w:subagent:" + id, RequesterKey: req, AgentID: "w"}
			if err := s.CreateRun(ctx, &Session{Key: r.ChildKey}, nil, r); err != nil {
				t.Error(err)
				return
			}
			if ok, err := s.FinishRun(ctx, id, Outcome{State: RunOK}, &Announce{RequesterKey: req, Status: "ok", Body: "done " + id}); err != nil || !ok {
				t.Errorf("finish %s: %v %v", id, ok, err)
			}
			return
		}
		anns, err := s.ClaimAnnounces(ctx, req)
		if err != nil {
			t.Error(err)
		}
		for _, an := range anns {
			if _, dup := got.LoadOrStore(an.RunID, true); dup {
				t.Errorf("announce of %s handed out twice", an.RunID)
			}
			claimed.Add(1)
			mu.Lock()
			ids = append(ids, an.RunID)
			mu.Unlock()
		}
	})
	// What no racer took is still there, once.
	for _, s := range []*Store{a, b} {
		anns, err := s.ClaimAnnounces(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, an := range anns {
			if _, dup := got.LoadOrStore(an.RunID, true); dup {
				t.Errorf("announce of %s handed out twice", an.RunID)
			}
			ids = append(ids, an.RunID)
		}
	}
	sort.Strings(ids)
	if len(ids) != runs {
		t.Fatalf("%d announces handed out (%v), want each of %d once", len(ids), ids, runs)
	}
}

// max_children_per_agent holds across hosts: the count and the insert are
// one transaction.
func TestTwoHostsMaxChildrenInTransaction(t *testing.T) {
	a, b := twoHosts(t)
	ctx := context.Background()
	const req, limit, tries = "agent:main:main", 3, 12
	var ok, limited atomic.Int32
	// spawn creates kid id of req under the limit (with a task when task
	// is set) and counts it accepted or refused.
	spawn := func(s *Store, id string, task bool) {
		r := &Run{ID: id, ChildKey: "agent:w:subagent:" + id, RequesterKey: req, AgentID: "w", Kind: "spawn", MaxActiveSiblings: limit}
		var msgs []Message
		if task {
			msgs = []Message{{SessionKey: r.ChildKey, Role: RoleUser, Trust: TrustUser, Content: Content{Text: "task " + id}}}
		}
		var le *LimitError
		switch err := s.CreateRun(ctx, &Session{Key: r.ChildKey}, msgs, r); {
		case err == nil:
			ok.Add(1)
		case errors.As(err, &le):
			limited.Add(1)
		default:
			t.Errorf("spawn %s: %v", id, err)
		}
	}
	race(tries, a, b, func(i int, s *Store) {
		spawn(s, fmt.Sprintf("kid-%02d", i), true)
	})
	if ok.Load() != limit || limited.Load() != tries-limit {
		t.Fatalf("%d spawns accepted and %d refused, want %d and %d", ok.Load(), limited.Load(), limit, tries-limit)
	}
	for _, s := range []*Store{a, b} {
		if n, err := s.ActiveChildren(ctx, req); err != nil || n != limit {
			t.Fatalf("active children %d (%v), want %d", n, err, limit)
		}
	}
	// A refused spawn left nothing behind: no session, no message.
	var sessions int
	if err := a.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE key LIKE 'agent:w:subagent:%'`).Scan(&sessions); err != nil || sessions != limit {
		t.Fatalf("%d child sessions (%v), want %d", sessions, err, limit)
	}
	checkActive(t, a, "the race", map[string]int{req: limit})
	// Ends and spawns race across the hosts: each end frees one place, and
	// the kept count (run_children) stays the real one.
	active, err := a.ListRuns(ctx, RunFilter{Requesters: []string{req}, States: []string{RunQueued, RunRunning}})
	if err != nil || len(active) != limit {
		t.Fatalf("%d active runs (%v), want %d", len(active), err, limit)
	}
	ok.Store(0)
	limited.Store(0)
	race(2*limit, a, b, func(i int, s *Store) {
		if i < limit {
			if done, err := s.FinishRun(ctx, active[i].ID, Outcome{State: RunOK}, nil); err != nil || !done {
				t.Errorf("finish %s: %v %v", active[i].ID, done, err)
			}
			return
		}
		spawn(s, fmt.Sprintf("more-%02d", i), false)
	})
	if ok.Load()+limited.Load() != limit {
		t.Fatalf("%d spawns accepted and %d refused, want %d in all", ok.Load(), limited.Load(), limit)
	}
	checkActive(t, b, "ends and spawns racing", map[string]int{req: int(ok.Load())})
}

// A task is claimed by one session; a cron occurrence fires once.
func TestTwoHostsTaskAndCronClaimedOnce(t *testing.T) {
	a, b := twoHosts(t)
	ctx := context.Background()
	task := &Task{List: "l", Title: "one"}
	if _, err := a.CreateTask(ctx, task, "agent:main:main"); err != nil {
		t.Fatal(err)
	}
	job := &CronJob{ID: "job", Name: "j", Schedule: "every:1m", Timezone: "UTC", Payload: "{}", CreatorKey: "agent:main:main", Enabled: true, NextRunAt: 60000}
	if err := a.InsertCronJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	var tasks, crons, taskRefused atomic.Int32
	race(8, a, b, func(i int, s *Store) {
		if _, err := s.ClaimTask(ctx, task.ID, fmt.Sprintf("agent:w:%d", i), "x"); err == nil {
			tasks.Add(1)
		} else if ce := (*ClaimError)(nil); errors.As(err, &ce) {
			taskRefused.Add(1)
		} else {
			t.Errorf("claim task: %v", err)
		}
		claimed, _, err := s.ClaimCronOccurrence(ctx, job.ID, 60000, 120000, 60001)
		if err != nil {
			t.Errorf("claim cron: %v", err)
		}
		if claimed {
			crons.Add(1)
		}
	})
	if tasks.Load() != 1 || taskRefused.Load() != 7 {
		t.Fatalf("task claimed %d times, refused %d, want 1 and 7", tasks.Load(), taskRefused.Load())
	}
	if crons.Load() != 1 {
		t.Fatalf("cron occurrence claimed %d times, want once", crons.Load())
	}
	j, err := b.GetCronJob(ctx, job.ID)
	if err != nil || j.NextRunAt != 120000 {
		t.Fatalf("job after the claim: %+v %v", j, err)
	}
}

// Processes opening one new database at once apply each migration once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := testdb.DSN(t, "new.db")
	ctx := context.Background()
	stores := make([]*Store, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			stores[i], errs[i] = Open(ctx, dsn, nil)
		}(i)
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer s.Close()
	}
	ms, _ := loadMigrations(stores[0].d.migrations)
	var n, newest int
	if err := stores[0].QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &newest); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || newest != ms[len(ms)-1].version {
		t.Fatalf("schema_migrations: %d rows up to %d, want %d up to %d", n, newest, len(ms), ms[len(ms)-1].version)
	}
	for i, s := range stores {
		if s.SchemaVersion() != newest {
			t.Errorf("store %d at schema %d, want %d", i, s.SchemaVersion(), newest)
		}
	}
}

// Search means the same on both backends: every word must appear, whole
// words, case- and accent-insensitive, '_' separates words, operators are
// literal words.
func TestSearchSemanticsOnEitherBackend(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:main"}); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"deploy_now and Café crème", "rollback NEAR the end", ""} {
		if _, err := s.AppendMessage(ctx, Message{SessionKey: "agent:main:main", Role: RoleUser, Trust: TrustUser, Content: Content{Text: text}}); err != nil {
			t.Fatal(err)
		}
	}
	for q, want := range map[string]int{
		"deploy": 1, "now": 1, "deploy_now": 1, "CAFE": 1, "creme café": 1, "deploy AND cafe": 1,
		"deploy OR absent": 0, "deploy NOT": 0, "deplo": 0, "deploy*": 1, `"rollback" near`: 1,
		"rollback NEAR end": 1, "rollback deploy": 0, "-- ;": 0, "": 0,
	} {
		n := 0
		if err := s.Search(ctx, SearchQuery{Query: q}, func(Hit) bool { n++; return true }); err != nil {
			t.Errorf("%s: search %q: %v", s.Backend(), q, err)
		}
		if n != want {
			t.Errorf("%s: search %q found %d, want %d", s.Backend(), q, n, want)
		}
	}
}
