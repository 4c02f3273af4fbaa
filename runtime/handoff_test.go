package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// When a run's turn ends and other runs wait in line for its lane slot,
// the transaction that records its end also claims the first of them: the
// slot passes straight on, with no second write (and no idle gap) between
// one run's end and the next one's start. What must still hold: one turn
// at a time in a lane of one (max_concurrent), every run executed exactly
// once and ended ok, each announced once, and no run claimed by anything
// but that hand-off after the first.
func TestLaneSlotPassesWithTheNextClaim(t *testing.T) {
	f := injectFaults(t, nil) // counts the claims and finishes
	ctx := context.Background()

	// Each model call says which task it serves and waits to be let go.
	type turn struct {
		task    string
		release chan struct{}
	}
	started := make(chan turn)
	var mu sync.Mutex
	active, peak := 0, 0
	prov := &fakeProvider{fn: func(ctx context.Context, _ int, req provider.Request) (*provider.Response, error) {
		mu.Lock()
		active++
		peak = max(peak, active)
		mu.Unlock()
		defer func() {
			mu.Lock()
			active--
			mu.Unlock()
		}()
		tr := turn{task: req.Messages[len(req.Messages)-1].Text, release: make(chan struct{})}
		select {
		case started <- tr:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		select {
		case <-tr.release:
			return &provider.Response{Text: "done: " + tr.task}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	m, st := laneOfOne(t, "handoff", prov)

	lined := make(chan string, 8)
	laneWaitHook = func(id string) { lined <- id }
	t.Cleanup(func() { laneWaitHook = nil })

	const n = 4
	queue := func(i int) string {
		id := fmt.Sprintf("r%d", i)
		child := "agent:w:subagent:" + id
		opts, err := json.Marshal(runOptions{Caller: policy.Caller{Key: child, AgentID: "w", Depth: 1}, ModelID: "fake/m"})
		if err != nil {
			t.Fatal(err)
		}
		task := store.Message{SessionKey: child, Role: store.RoleUser, Trust: store.TrustUser, Content: store.Content{Text: "task " + id}}
		r := &store.Run{ID: id, Kind: KindSpawn, ChildKey: child, RequesterKey: "agent:main:main", AgentID: "w", Options: opts,
			OwnerInstance: m.Instance(), OwnerPID: m.pid}
		if err := st.CreateRun(ctx, &store.Session{Key: child, Depth: 1}, []store.Message{task}, r); err != nil {
			t.Fatal(err)
		}
		m.schedule(id)
		return id
	}
	ids := []string{queue(0)}
	first := <-started // r0 holds the only slot
	for i := 1; i < n; i++ {
		ids = append(ids, queue(i))
	}
	for i := 1; i < n; i++ {
		<-lined // the other three wait in line
	}
	seen := map[string]int{first.task: 1}
	cur := first
	for i := 1; i < n; i++ {
		close(cur.release)
		cur = <-started // the next run's turn began: its claim came with the end above
		seen[cur.task]++
	}
	close(cur.release)
	for _, id := range ids {
		r := ended(t, m, id)
		if r.State != store.RunOK || r.OwnerInstance != m.Instance() {
			t.Fatalf("run %s: state %q owner %q, want ok by this process", id, r.State, r.OwnerInstance)
		}
		if seen["task "+id] != 1 {
			t.Fatalf("run %s's turn ran %d times, want once (%v)", id, seen["task "+id], seen)
		}
		a, err := st.GetAnnounce(ctx, id)
		if err != nil || a.Status != store.RunOK {
			t.Fatalf("announce of %s: %+v %v", id, a, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 1 {
		t.Fatalf("turns at once: %d, want 1 (max_concurrent = 1)", peak)
	}
	if got := f.count("claim"); got != 1 {
		t.Fatalf("claims of their own: %d, want 1 (the first run; each later one claimed by the end of the run before it)", got)
	}
	if got := f.count("finish"); got != n {
		t.Fatalf("outcome writes: %d, want %d", got, n)
	}
}

// laneOfOne starts a run manager over a new store whose subagent lane
// holds one run at a time (max_concurrent = 1) and whose one model,
// fake/m, is served by prov. Both are closed when the test ends.
func laneOfOne(t *testing.T, name string, prov provider.Provider) (*Manager, *store.Store) {
	t.Helper()
	cfg, err := config.Parse([]byte(`
[providers.fake]
kind = "openai-compatible"
[[models]]
id = "fake/m"
provider = "fake"
[agents.defaults]
model = "fake/m"
[agents.defaults.subagents]
max_concurrent = 1
`), name+".toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(t, name+".db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := New(cfg, st, &Options{Providers: map[string]provider.Provider{"fake": prov}})
	rt.SetTools(&fakeTools{})
	m := NewManager(rt)
	gate, err := policy.New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.SetGate(gate)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, st
}
