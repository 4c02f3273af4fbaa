package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// CreateRun writes a session it creates with its first messages once (the
// row carries their counts and the run's status) and hands the run the
// transcript it wrote (Run.Transcript); an existing or forked session is
// appended to and claimed as before, with no transcript handed over. The
// stored rows are the same either way, on either backend.
func TestCreateRunNewSessionWrittenOnce(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	me := "agent:m:main"
	if _, err := s.EnsureSession(ctx, Session{Key: me}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendMessages(ctx, []Message{{SessionKey: me, Role: RoleUser, Trust: TrustUser, Content: Content{Text: "hello"}}}); err != nil {
		t.Fatal(err)
	}
	task := func(key, text string) []Message {
		return []Message{{SessionKey: key, Role: RoleUser, Trust: TrustInterSession, TokensIn: 3, Content: Content{Text: text}}}
	}
	check := func(key string, status string, count int, wantText ...string) []Message {
		t.Helper()
		sess, err := s.GetSession(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := s.Transcript(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if sess.Status != status || sess.MessageCount != count || len(msgs) != count {
			t.Fatalf("%s: status %q, message_count %d, %d messages; want %q, %d", key, sess.Status, sess.MessageCount, len(msgs), status, count)
		}
		var tokens int64
		for i, m := range msgs {
			tokens += m.TokensIn
			if m.Seq != int64(i+1) {
				t.Fatalf("%s: message %d has seq %d", key, i, m.Seq)
			}
		}
		if sess.ForkedFrom == "" && sess.TokensIn != tokens { // a fork counts only its own spending
			t.Fatalf("%s: tokens_in %d, the messages' sum %d", key, sess.TokensIn, tokens)
		}
		for i, want := range wantText {
			if got := msgs[len(msgs)-len(wantText)+i].Content.Text; got != want {
				t.Fatalf("%s: message %d is %q, want %q", key, i, got, want)
			}
		}
		return msgs
	}

	// A new session, its task, a running run and the call's record.
	child := "agent:m:subagent:a"
	rec := &CallRecord{Requester: me, Messages: []Message{
		{SessionKey: me, Role: RoleAssistant, Trust: TrustUser, Content: Content{ToolCalls: []ToolCall{{ID: "c1", Name: "sessions_spawn"}}}},
		{SessionKey: me, Role: RoleTool, Trust: TrustExternal, Content: Content{ToolResults: []ToolResult{{CallID: "c1", Name: "sessions_spawn", Content: "ok"}}}},
	}}
	msgs := task(child, "first task")
	r := &Run{ID: "a", Kind: "spawn", ChildKey: child, RequesterKey: me, AgentID: "m", State: RunRunning, Record: rec, MaxActiveSiblings: 2}
	if err := s.CreateRun(ctx, &Session{Key: child, ParentKey: me, Depth: 1, Status: "queued"}, msgs, r); err != nil {
		t.Fatal(err)
	}
	stored := check(child, "running", 1, "first task")
	if len(r.Transcript) != 1 || r.Transcript[0].Seq != 1 || r.Transcript[0].Content.Text != "first task" || r.Transcript[0].CreatedAt != stored[0].CreatedAt {
		t.Fatalf("handed transcript %+v, stored %+v", r.Transcript, stored)
	}
	if msgs[0].Seq != 1 || rec.Messages[0].Seq != 2 || rec.Messages[1].Seq != 3 {
		t.Fatalf("seqs given back: task %d, record %d %d", msgs[0].Seq, rec.Messages[0].Seq, rec.Messages[1].Seq)
	}
	check(me, "idle", 3)
	if got, _ := s.GetRun(ctx, "a"); got == nil || got.State != RunRunning || got.StartedAt == 0 {
		t.Fatalf("run a %+v", got)
	}

	// A new session whose run is queued keeps the status it was given.
	child2 := "agent:m:subagent:b"
	r2 := &Run{ID: "b", Kind: "spawn", ChildKey: child2, RequesterKey: me, AgentID: "m", MaxActiveSiblings: 2}
	if err := s.CreateRun(ctx, &Session{Key: child2, Status: "queued"}, task(child2, "second"), r2); err != nil {
		t.Fatal(err)
	}
	check(child2, "queued", 1, "second")
	if r2.State != RunQueued || len(r2.Transcript) != 1 {
		t.Fatalf("queued run: state %s, transcript %+v", r2.State, r2.Transcript)
	}

	// Its claim says which seq the session's newest message has, counting
	// what the claim appends: the waiter compares it with what it knew.
	start := func(json.RawMessage) ([]Message, json.RawMessage, error) {
		return []Message{{SessionKey: child2, Role: RoleUser, Trust: TrustUser, Content: Content{Text: "at the claim"}}}, nil, nil
	}
	if c, err := s.ClaimRunFor(ctx, "b", "inst", 1, start); err != nil || c == nil || c.SessionLastSeq != 2 {
		t.Fatalf("claim of b: %+v %v, want newest seq 2", c, err)
	}
	check(child2, "running", 2, "second", "at the claim")

	// Over the limit: nothing is written, nothing handed over.
	child3 := "agent:m:subagent:c"
	r3 := &Run{ID: "c", Kind: "spawn", ChildKey: child3, RequesterKey: me, AgentID: "m", State: RunRunning, MaxActiveSiblings: 2}
	var le *LimitError
	if err := s.CreateRun(ctx, &Session{Key: child3}, task(child3, "third"), r3); !errors.As(err, &le) || r3.Transcript != nil {
		t.Fatalf("over the limit: %v, transcript %+v", err, r3.Transcript)
	}
	if _, err := s.GetSession(ctx, child3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session of a refused run: %v", err)
	}

	// An existing session: its task is appended after what it holds, and
	// the run is created queued behind its active run (no transcript).
	r4 := &Run{ID: "d", Kind: "spawn", ChildKey: child, RequesterKey: me, AgentID: "m", State: RunRunning}
	if err := s.CreateRun(ctx, &Session{Key: child, Status: "queued"}, task(child, "again"), r4); err != nil {
		t.Fatal(err)
	}
	check(child, "running", 2, "first task", "again")
	if r4.State != RunQueued || r4.Transcript != nil {
		t.Fatalf("run on an existing session: state %s, transcript %+v", r4.State, r4.Transcript)
	}

	// A fork: the copied messages come first; no transcript handed over.
	fork := "agent:m:subagent:f"
	r5 := &Run{ID: "f", Kind: "spawn", ChildKey: fork, RequesterKey: me, AgentID: "m", State: RunRunning}
	if err := s.CreateRun(ctx, &Session{Key: fork, ForkedFrom: child, ForkedAtSeq: 2}, task(fork, "forked"), r5); err != nil {
		t.Fatal(err)
	}
	check(fork, "running", 3, "first task", "again", "forked")
	if r5.State != RunRunning || r5.Transcript != nil {
		t.Fatalf("forked run: state %s, transcript %+v", r5.State, r5.Transcript)
	}
}

// The reads of active runs with no requester (the heartbeat, recovery,
// the list of active runs) and the spawn's count of active children go
// through the partial index of active runs, which replaced runs_state and
// runs_owner (0014): none scans the table.
func TestActiveRunReadsUseThePartialIndex(t *testing.T) {
	if testdb.Postgres() {
		t.Skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans by its statistics")
	}
	s := openTest(t, "")
	list, _ := listRunsQuery(RunFilter{States: []string{RunRunning, RunQueued}, Limit: 100})
	for _, c := range []struct {
		q    string
		args []any
	}{
		{heartbeatRuns, []any{1, "i"}},
		{foreignActiveRuns, []any{"i"}},
		{list, nil},
		{`SELECT count(*) FROM runs WHERE requester_key = ? AND kind = 'spawn' AND state IN ('queued','running')`, []any{"r"}},
	} {
		rows, err := s.DB().Query("EXPLAIN QUERY PLAN "+c.q, c.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, "runs_active_requester") {
			t.Errorf("%s: plan %q does not use runs_active_requester", c.q, joined)
		}
	}
}
