package store

import (
	"context"
	"reflect"
	"testing"
)

// SessionRuns reads children, the active run and the latest run in one
// query, with the same answers as the separate reads it replaces.
func TestSessionRunsOneQuery(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	parent := "agent:m:main"
	s.EnsureSession(ctx, Session{Key: parent})
	got, err := s.SessionRuns(ctx, parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Children) != 0 || got.Active != nil || got.Last != nil {
		t.Fatalf("empty session: %+v", got)
	}
	for _, k := range []string{"agent:m:subagent:b", "agent:m:subagent:a", "agent:m:subagent:c"} {
		if _, err := s.EnsureSession(ctx, Session{Key: k, ParentKey: parent, Depth: 1}); err != nil {
			t.Fatal(err)
		}
	}
	child := "agent:m:subagent:a"
	for _, r := range []*Run{
		{ID: "r1", ChildKey: child, RequesterKey: parent, AgentID: "m", State: RunRunning, CreatedAt: 100, Options: []byte(`{"x":1}`)},
		{ID: "r2", ChildKey: child, RequesterKey: parent, AgentID: "m", State: RunOK, CreatedAt: 200, Cleanup: "delete"},
		{ID: "r0", ChildKey: parent, RequesterKey: parent, AgentID: "m", State: RunQueued, CreatedAt: 50},
	} {
		if err := s.InsertRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.SessionRuns(ctx, parent)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := s.Children(ctx, parent)
	if !reflect.DeepEqual(got.Children, want) || len(want) != 3 {
		t.Fatalf("children %v, want %v", got.Children, want)
	}
	if got.Active == nil || got.Active.ID != "r0" || got.Last == nil || got.Last.ID != "r0" {
		t.Fatalf("parent's runs: active %+v last %+v", got.Active, got.Last)
	}
	got, err = s.SessionRuns(ctx, child)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Children) != 0 {
		t.Fatalf("child's children %v", got.Children)
	}
	if got.Active == nil || got.Active.ID != "r1" || got.Active.State != RunRunning ||
		string(got.Active.Options) != `{"x":1}` {
		t.Fatalf("active %+v", got.Active)
	}
	full, _ := s.GetRun(ctx, "r2")
	if !reflect.DeepEqual(got.Last, full) {
		t.Fatalf("last run %+v, want %+v", got.Last, full)
	}
}
