package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

func callRecord(key string, i int) []Message {
	id := fmt.Sprintf("c%d", i)
	return []Message{
		{SessionKey: key, Role: RoleAssistant, Trust: TrustUser, Content: Content{ToolCalls: []ToolCall{{ID: id, Name: "sessions_list"}}}},
		{SessionKey: key, Role: RoleTool, Trust: TrustExternal, Content: Content{ToolResults: []ToolResult{{CallID: id, Name: "sessions_list", Content: "ok"}}}},
	}
}

// A read-only call's record is written behind the reply, yet it keeps its
// place: interleaved with waited writes to the same session, every record
// lands in order, and a read of the transcript sees all of them.
func TestRecordCallAsyncKeepsOrderAndIsReadable(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	const key = "agent:main:main"
	if _, err := s.EnsureSession(ctx, Session{Key: key}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := s.RecordCall(ctx, callRecord(key, i), key, i%5 == 4); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			if _, err := s.AppendMessage(ctx, Message{SessionKey: key, Role: RoleUser, Trust: TrustUser, Content: Content{Text: fmt.Sprintf("after %d", i)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	msgs, err := s.Transcript(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(msgs), 50*2+5; got != want {
		t.Fatalf("transcript has %d messages, want %d", got, want)
	}
	next := 0
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
		switch {
		case m.Content.Text != "":
			if want := fmt.Sprintf("after %d", next-1); m.Content.Text != want {
				t.Fatalf("seq %d: %q, want %q", m.Seq, m.Content.Text, want)
			}
		case len(m.Content.ToolCalls) == 1:
			if got, want := m.Content.ToolCalls[0].ID, fmt.Sprintf("c%d", next); got != want {
				t.Fatalf("seq %d: call %s, want %s", m.Seq, got, want)
			}
			next++
		}
	}
}

// Close flushes records nobody waited for: a clean shutdown loses none.
func TestRecordCallAsyncFlushedByClose(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	const key = "agent:main:main"
	s.EnsureSession(ctx, Session{Key: key})
	for i := 0; i < 100; i++ {
		if _, err := s.RecordCall(ctx, callRecord(key, i), key, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	sess, err := s.GetSession(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if sess.MessageCount != 200 {
		t.Fatalf("after close and reopen: %d messages, want 200", sess.MessageCount)
	}
}

// The in-memory signal never hides an announce: one committed by this
// process is claimed by the next call, one written by another process on
// the same file after the poll that the heartbeat runs.
func TestRecordCallClaimsAnnouncesOnce(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	a := openTest(t, path)
	b := openTest(t, path)
	ctx := context.Background()
	const key = "agent:main:main"
	a.EnsureSession(ctx, Session{Key: key})
	// Nothing pending: the caller is known clear from here on.
	if anns, err := a.RecordCall(ctx, callRecord(key, 0), key, false); err != nil || len(anns) != 0 {
		t.Fatalf("nothing pending: %v %v", anns, err)
	}
	finish := func(st *Store, id string) {
		t.Helper()
		r := &Run{ID: id, ChildKey: "agent:main:subagent:" + id, RequesterKey: key, AgentID: "main"}
		if err := st.CreateRun(ctx, &Session{Key: r.ChildKey}, nil, r); err != nil {
			t.Fatal(err)
		}
		if ok, err := st.FinishRun(ctx, id, Outcome{State: RunOK}, &Announce{RequesterKey: key, Status: "ok", Body: "done " + id}); err != nil || !ok {
			t.Fatalf("finish %s: %v %v", id, ok, err)
		}
	}
	finish(a, "r1")
	anns, err := a.RecordCall(ctx, callRecord(key, 1), key, false)
	if err != nil || len(anns) != 1 || anns[0].RunID != "r1" {
		t.Fatalf("local announce: got %v %v, want r1", anns, err)
	}
	if anns, _ := a.RecordCall(ctx, callRecord(key, 2), key, false); len(anns) != 0 {
		t.Fatalf("claimed twice: %v", anns)
	}
	finish(b, "r2") // another process
	if err := a.PollAnnounces(ctx); err != nil {
		t.Fatal(err)
	}
	anns, err = a.RecordCall(ctx, nil, key, false)
	if err != nil || len(anns) != 1 || anns[0].RunID != "r2" {
		t.Fatalf("announce of another process after the poll: got %v %v, want r2", anns, err)
	}
}

// A batch runs without savepoints; when one write in it fails, the batch
// runs again with a savepoint per write, so only that write rolls back.
func TestBatchFailureRollsBackOnlyItsWrite(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	hold, held := make(chan struct{}), make(chan struct{})
	go s.Tx(ctx, func(tx *sql.Tx) error { // keeps the writer busy while the batch queues
		close(held)
		<-hold
		return nil
	})
	<-held
	const n = 6
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			errs <- s.Tx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO task_lists (name, created_by, created_at) VALUES (?, 'x', 0)`, fmt.Sprintf("l%d", i)); err != nil {
					return err
				}
				if i == 3 {
					return errors.New("failed after writing")
				}
				return nil
			})
		}(i)
	}
	for len(s.writes) < n { // all n queued: the writer takes them as one batch
		runtime.Gosched()
	}
	close(hold)
	failed := 0
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			failed++
		}
	}
	var names []string
	rows, err := s.DB().Query(`SELECT name FROM task_lists ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		rows.Scan(&name)
		names = append(names, name)
	}
	rows.Close()
	if got, want := strings.Join(names, ","), "l0,l1,l2,l4,l5"; failed != 1 || got != want {
		t.Fatalf("%d writes failed, lists %s; want 1 failed and %s", failed, got, want)
	}
}
