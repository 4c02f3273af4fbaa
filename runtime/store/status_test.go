package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// SessionStatus reads the session's row, its children, the active run and
// the latest run in one statement, with the same answers as the separate
// reads it replaces (the runs' columns session_status uses), and
// ErrNotFound for a session that does not exist, even when runs name it.
func TestSessionStatusOneStatement(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	parent := "agent:m:main"
	if _, err := s.EnsureSession(ctx, Session{Key: parent, Label: "p", Model: "m1"}); err != nil {
		t.Fatal(err)
	}
	sess, got, err := s.SessionStatus(ctx, parent)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := s.GetSession(ctx, parent); !reflect.DeepEqual(sess, want) {
		t.Fatalf("session %+v, want %+v", sess, want)
	}
	if got.Children == nil || len(got.Children) != 0 || got.Active != nil || got.Last != nil {
		t.Fatalf("empty session: %+v", got)
	}
	for _, k := range []string{"agent:m:subagent:b", "agent:m:subagent:a", "agent:m:subagent:c"} {
		if _, err := s.EnsureSession(ctx, Session{Key: k, ParentKey: parent, Depth: 1, Thinking: "low"}); err != nil {
			t.Fatal(err)
		}
	}
	child := "agent:m:subagent:a"
	for _, r := range []*Run{
		{ID: "r1", ChildKey: child, RequesterKey: parent, AgentID: "m", State: RunRunning, CreatedAt: 100, StartedAt: 110, Options: []byte(`{"x":1}`)},
		{ID: "r2", ChildKey: child, RequesterKey: parent, AgentID: "m", State: RunOK, CreatedAt: 200, Cleanup: "delete", Options: []byte(`{"y":2}`)},
		{ID: "r0", ChildKey: parent, RequesterKey: parent, AgentID: "m", State: RunQueued, CreatedAt: 50},
		{ID: "r3", ChildKey: "agent:m:ghost", RequesterKey: parent, AgentID: "m", State: RunQueued, CreatedAt: 300},
	} {
		if err := s.InsertRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DB().ExecContext(ctx, "UPDATE runs SET ended_at = 250, tokens_in = 7, tokens_out = 3, cost_usd = 0.25 WHERE id = 'r2'"); err != nil {
		t.Fatal(err)
	}
	// The columns session_status reads, as GetRun reads them.
	same := func(what string, got *Run, id string) {
		t.Helper()
		full, err := s.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := Run{ID: full.ID, AgentID: full.AgentID, ChildKey: full.ChildKey, State: full.State, Cleanup: full.Cleanup,
			Options: full.Options, TokensIn: full.TokensIn, TokensOut: full.TokensOut, CostUSD: full.CostUSD,
			CreatedAt: full.CreatedAt, StartedAt: full.StartedAt, EndedAt: full.EndedAt}
		if got == nil || !reflect.DeepEqual(*got, want) {
			t.Fatalf("%s run %+v, want %+v", what, got, want)
		}
	}
	sess, got, err = s.SessionStatus(ctx, parent)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := s.GetSession(ctx, parent); !reflect.DeepEqual(sess, want) {
		t.Fatalf("session %+v, want %+v", sess, want)
	}
	want, _ := s.Children(ctx, parent)
	if !reflect.DeepEqual(got.Children, want) || len(want) != 3 {
		t.Fatalf("children %v, want %v", got.Children, want)
	}
	same("parent's active", got.Active, "r0")
	same("parent's last", got.Last, "r0")
	sess, got, err = s.SessionStatus(ctx, child)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := s.GetSession(ctx, child); !reflect.DeepEqual(sess, want) {
		t.Fatalf("child session %+v, want %+v", sess, want)
	}
	if len(got.Children) != 0 {
		t.Fatalf("child's children %v", got.Children)
	}
	same("child's active", got.Active, "r1")
	same("child's last", got.Last, "r2")
	if _, _, err := s.SessionStatus(ctx, "agent:m:ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a session with a run but no row: err %v, want ErrNotFound", err)
	}
}

// SessionStatus reads the newest runs in index order: no sort of a session's
// runs (a long-lived session has one per send).
func TestSessionStatusNeedsNoSort(t *testing.T) {
	if testdb.Postgres() {
		t.Skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans by its statistics")
	}
	s := openTest(t, "")
	rows, err := s.DB().Query("EXPLAIN QUERY PLAN "+sessionStatusQuery, "k", "k", "k", "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "TEMP B-TREE") || !strings.Contains(text, "runs_child") {
		t.Fatalf("plan sorts or does not use runs_child:\n%s", text)
	}
}
