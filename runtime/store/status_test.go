package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
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

// SessionStatus reads the session's row with its runs and children in one
// statement: the row as GetSession reads it, the runs and children as
// SessionRuns, and ErrNotFound for a session that does not exist (even
// when runs or children name it).
func TestSessionStatusOneStatement(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	parent, child := "agent:m:main", "agent:m:subagent:a"
	if _, err := s.EnsureSession(ctx, Session{Key: parent, Label: "p", Model: "m1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureSession(ctx, Session{Key: child, ParentKey: parent, Depth: 1, Thinking: "low"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Run{
		{ID: "r1", ChildKey: child, RequesterKey: parent, AgentID: "m", State: RunOK, CreatedAt: 100, Options: []byte(`{"y":2}`)},
		{ID: "r2", ChildKey: child, RequesterKey: parent, AgentID: "m", State: RunRunning, CreatedAt: 200},
		{ID: "r3", ChildKey: "agent:m:ghost", RequesterKey: parent, AgentID: "m", State: RunQueued, CreatedAt: 300},
	} {
		if err := s.InsertRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{parent, child} {
		sess, runs, err := s.SessionStatus(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := s.GetSession(ctx, key)
		if !reflect.DeepEqual(sess, want) {
			t.Fatalf("%s: session %+v, want %+v", key, sess, want)
		}
		wantRuns, _ := s.SessionRuns(ctx, key)
		if !reflect.DeepEqual(runs, wantRuns) {
			t.Fatalf("%s: runs %+v, want %+v", key, runs, wantRuns)
		}
	}
	_, runs, _ := s.SessionStatus(ctx, parent)
	if !reflect.DeepEqual(runs.Children, []string{child}) || runs.Active != nil || runs.Last != nil {
		t.Fatalf("parent: %+v", runs)
	}
	_, runs, _ = s.SessionStatus(ctx, child)
	full, _ := s.GetRun(ctx, "r2")
	if len(runs.Children) != 0 || !reflect.DeepEqual(runs.Active, full) || !reflect.DeepEqual(runs.Last, full) {
		t.Fatalf("child: active %+v last %+v children %v", runs.Active, runs.Last, runs.Children)
	}
	if _, _, err := s.SessionStatus(ctx, "agent:m:ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a session with a run but no row: err %v, want ErrNotFound", err)
	}
}

// CreateRun in state running claims the run it creates (started, its
// session running) unless its session already has an active run, and
// carries a call's record with the claim of the requester's announces:
// all in one waited write, on either backend.
func TestCreateRunClaimedWithRecord(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	me := "agent:m:main"
	s.EnsureSession(ctx, Session{Key: me})
	// An announce waiting for me, from an earlier run.
	if err := s.InsertRun(ctx, &Run{ID: "old", ChildKey: "agent:m:subagent:old", RequesterKey: me, AgentID: "m"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.FinishRun(ctx, "old", Outcome{State: RunOK}, &Announce{RunID: "old", RequesterKey: me, Status: RunOK, Body: "old is done"}); err != nil || !ok {
		t.Fatalf("finish: %v %v", ok, err)
	}
	rec := &CallRecord{Requester: me, Messages: []Message{
		{SessionKey: me, Role: RoleAssistant, Trust: TrustUser, Content: Content{ToolCalls: []ToolCall{{ID: "c1", Name: "sessions_spawn"}}}},
		{SessionKey: me, Role: RoleTool, Trust: TrustExternal, Content: Content{ToolResults: []ToolResult{{CallID: "c1", Name: "sessions_spawn", Content: "accepted"}}}},
	}}
	child := "agent:m:subagent:new"
	w0 := s.WriteStats()
	r := &Run{ID: "new", Kind: "spawn", ChildKey: child, RequesterKey: me, AgentID: "m", State: RunRunning, Record: rec}
	task := Message{SessionKey: child, Role: RoleUser, Trust: TrustUser, Content: Content{Text: "do it"}}
	if err := s.CreateRun(ctx, &Session{Key: child, ParentKey: me, Depth: 1}, []Message{task}, r); err != nil {
		t.Fatal(err)
	}
	if n := s.WriteStats().Waited - w0.Waited; n != 1 {
		t.Fatalf("waited writes %d, want 1", n)
	}
	got, err := s.GetRun(ctx, "new")
	if err != nil || got.State != RunRunning || got.StartedAt == 0 || r.State != RunRunning {
		t.Fatalf("run %+v %v (r.State %s)", got, err, r.State)
	}
	if sess, _ := s.GetSession(ctx, child); sess == nil || sess.Status != "running" {
		t.Fatalf("child session %+v", sess)
	}
	if !rec.Committed || len(rec.Claimed) != 1 || rec.Claimed[0].Body != "old is done" {
		t.Fatalf("record committed %v, claimed %+v", rec.Committed, rec.Claimed)
	}
	if a, _ := s.GetAnnounce(ctx, "old"); a == nil || a.DeliveredAt == 0 {
		t.Fatalf("announce not marked delivered: %+v", a)
	}
	msgs, _ := s.Transcript(ctx, me)
	found := 0
	for _, m := range msgs {
		for _, tr := range m.Content.ToolResults {
			if tr.CallID == "c1" {
				found++
			}
		}
	}
	if found != 1 {
		t.Fatalf("record in the transcript %d times, want 1", found)
	}
	// A second run on the same session, asked to start running, is
	// created queued: the session is busy.
	r2 := &Run{ID: "next", Kind: "spawn", ChildKey: child, RequesterKey: me, AgentID: "m", State: RunRunning}
	if err := s.CreateRun(ctx, nil, nil, r2); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetRun(ctx, "next"); got == nil || got.State != RunQueued || r2.State != RunQueued || got.StartedAt != 0 {
		t.Fatalf("second run %+v (r2.State %s), want queued", got, r2.State)
	}
}

// SessionStatus reads the newest runs in index order: no sort of a session's
// runs (a long-lived session has one per send).
func TestSessionRunsNeedNoSort(t *testing.T) {
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
