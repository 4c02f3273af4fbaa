package store

import (
	"context"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// A ChangeWatch sees commits of another handle on the same file (as
// another process would write it) and nothing when nothing was written.
func TestChangeWatchSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	path := testdb.DSN(t, "w.db")
	a, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w, err := a.WatchChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v1, err := w.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v2, _ := w.Version(ctx); v2 != v1 {
		t.Fatalf("version moved with no write: %d → %d", v1, v2)
	}
	if _, err := b.EnsureSession(ctx, Session{Key: "agent:main:main"}); err != nil {
		t.Fatal(err)
	}
	if v3, _ := w.Version(ctx); v3 == v1 {
		t.Fatal("version did not move after another handle committed")
	}
}

func TestDashboardQueries(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, testdb.DSN(t, "d.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, err := s.LastMessage(ctx, "agent:main:none"); ok || err != nil {
		t.Fatalf("last message of a missing session: %v %v", ok, err)
	}
	const day = 24 * 60 * 60 * 1000
	base := int64(20000) * day // 2024-10-04 UTC
	for i, r := range []struct {
		child, state string
		at           int64
		cost         float64
	}{
		{"agent:main:subagent:a", RunOK, base, 0.5},
		{"agent:main:subagent:a", RunOK, base + 1000, 0.25},
		{"agent:main:subagent:b", RunError, base + day, 1},
	} {
		err := s.CreateRun(ctx, &Session{Key: r.child}, []Message{{SessionKey: r.child, Role: RoleUser, Trust: TrustInterSession, Content: Content{Text: "task"}}},
			&Run{ID: string(rune('a' + i)), Kind: "spawn", ChildKey: r.child, RequesterKey: "agent:main:main", AgentID: "main", State: r.state, CreatedAt: r.at})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.DB().ExecContext(ctx, "UPDATE runs SET cost_usd = ?, tokens_in = 10 WHERE id = ?", r.cost, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.RunUsageByDay(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	want := []RunUsage{
		{ChildKey: "agent:main:subagent:a", AgentID: "main", State: RunOK, Day: "2024-10-04", Runs: 2, TokensIn: 20, CostUSD: 0.75},
		{ChildKey: "agent:main:subagent:b", AgentID: "main", State: RunError, Day: "2024-10-05", Runs: 1, TokensIn: 10, CostUSD: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("usage: %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("usage[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if later, _ := s.RunUsageByDay(ctx, base+day); len(later) != 1 {
		t.Errorf("since filter: %+v", later)
	}
	runs, err := s.RunsIn(ctx, "agent:main:subagent:a", 10)
	if err != nil || len(runs) != 2 || runs[0].ID != "b" {
		t.Fatalf("runs in a: %v (want b, a: newest first)", err)
	}
	m, ok, err := s.LastMessage(ctx, "agent:main:subagent:a")
	if err != nil || !ok || m.Seq != 2 || m.Content.Text != "task" {
		t.Fatalf("last message: %+v %v %v", m, ok, err)
	}
}
