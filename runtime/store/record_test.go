package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

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

// holdWriter keeps the writer busy in a transaction of its own until the
// returned release is called, so the writes queued meanwhile make one batch.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	hold, held := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Tx(context.Background(), func(tx *sql.Tx) error {
			close(held)
			<-hold
			return nil
		})
	}()
	<-held
	return func() {
		close(hold)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// waitQueued waits until n writes are queued for the writer.
func waitQueued(s *Store, n int) {
	for len(s.writes) < n {
		runtime.Gosched()
	}
}

// The records of one session's calls queued together are appended as one
// write, yet each keeps its place: records of two sessions interleaved
// with a waited write land in call order, the waited write after the
// records queued before it (it sees their seqs), and the whole batch is
// one commit.
func TestRecordsCoalescedKeepOrder(t *testing.T) {
	s, a, b := openTwoSessions(t)
	ctx := context.Background()
	release := holdWriter(t, s)
	queued := 0
	record := func(key string, i int) {
		t.Helper()
		if _, err := s.RecordCall(ctx, callRecord(key, i), key, false); err != nil {
			t.Fatal(err)
		}
		queued++
	}
	for i := 0; i < 5; i++ {
		record(a, i)
	}
	for i := 0; i < 3; i++ {
		record(b, i)
	}
	for i := 5; i < 10; i++ {
		record(a, i)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := s.AppendMessage(ctx, Message{SessionKey: a, Role: RoleUser, Trust: TrustUser, Content: Content{Text: "waited"}})
		waited <- err
	}()
	waitQueued(s, queued+1)
	queued++
	for i := 10; i < 15; i++ {
		record(a, i)
	}
	waitQueued(s, queued)
	c0 := s.WriteStats().Commits
	release()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	s.Flush(ctx, a)
	s.Flush(ctx, b)
	if got := s.WriteStats().Commits - c0; got != 2 { // the held transaction, then the batch
		t.Fatalf("%d commits after the hold, want 2 (the hold's and one for the batch)", got)
	}
	var want []string
	for i := 0; i < 10; i++ {
		want = append(want, fmt.Sprintf("c%d", i), fmt.Sprintf("c%d", i))
	}
	want = append(want, "waited")
	for i := 10; i < 15; i++ {
		want = append(want, fmt.Sprintf("c%d", i), fmt.Sprintf("c%d", i))
	}
	checkTranscript(t, s, a, want)
	checkTranscript(t, s, b, []string{"c0", "c0", "c1", "c1", "c2", "c2"})
}

// checkTranscript compares key's transcript (seqs 1…n in order) with want:
// a call's id for records, the text otherwise.
func checkTranscript(t *testing.T, s *Store, key string, want []string) {
	t.Helper()
	msgs, err := s.Transcript(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("%s: message %d has seq %d", key, i, m.Seq)
		}
		switch {
		case len(m.Content.ToolCalls) == 1:
			got = append(got, m.Content.ToolCalls[0].ID)
		case len(m.Content.ToolResults) == 1:
			got = append(got, m.Content.ToolResults[0].CallID)
		default:
			got = append(got, m.Content.Text)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s: transcript\n got %v\nwant %v", key, got, want)
	}
	sess, err := s.GetSession(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if sess.MessageCount != len(want) {
		t.Fatalf("%s: message_count %d, want %d", key, sess.MessageCount, len(want))
	}
}

// coalesce merges only runs of one session's records: a waited write or
// another session's record ends a run, and a record spanning sessions is
// never merged.
func TestCoalesceRuns(t *testing.T) {
	s := openTest(t, "")
	rec := func(keys ...string) *txReq {
		var msgs []Message
		for _, k := range keys {
			msgs = append(msgs, callRecord(k, 0)[0])
		}
		r, err := s.recordReq(msgs)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	waited := &txReq{ctx: context.Background(), done: make(chan error, 1)}
	batch := []*txReq{rec("a"), rec("a"), rec("a"), waited, rec("a"), rec("b"), rec("b"), rec("a", "b"), rec("a"), rec("a")}
	got := s.coalesce(batch)
	var shape []int
	for _, r := range got {
		switch {
		case r == waited:
			shape = append(shape, 0)
		case r.rec != nil:
			shape = append(shape, 1)
		default:
			shape = append(shape, -1) // merged
		}
	}
	if fmt.Sprint(shape) != fmt.Sprint([]int{-1, 0, 1, -1, 1, -1}) {
		t.Fatalf("coalesced shape %v (1 = single record, -1 = merged, 0 = waited)", shape)
	}
	if same := s.coalesce(batch[3:5]); len(same) != 2 || same[0] != waited {
		t.Fatalf("a batch with nothing to merge came back changed: %v", same)
	}
}

// Records of a session that no longer exists fail (and are logged) without
// taking the other records of their batch with them.
func TestCoalescedRecordsOfMissingSessionFailAlone(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	const a, ghost = "agent:main:main", "agent:ghost:main"
	if _, err := s.EnsureSession(ctx, Session{Key: a}); err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s)
	for i := 0; i < 3; i++ {
		if _, err := s.RecordCall(ctx, callRecord(a, i), a, false); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := s.RecordCall(ctx, callRecord(ghost, i), ghost, false); err != nil {
			t.Fatal(err)
		}
	}
	for i := 3; i < 5; i++ {
		if _, err := s.RecordCall(ctx, callRecord(a, i), a, false); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(s, 8)
	release()
	s.Flush(ctx, a)
	s.Flush(ctx, ghost)
	var want []string
	for i := 0; i < 5; i++ {
		want = append(want, fmt.Sprintf("c%d", i), fmt.Sprintf("c%d", i))
	}
	checkTranscript(t, s, a, want)
	var n int
	if err := s.DB().QueryRow(`SELECT count(*) FROM messages WHERE session_key = ?`, ghost).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d messages of a missing session (err %v), want 0", n, err)
	}
}

// A record lingering for company is committed at once when somebody needs
// it: a Flush (a read of the transcript), a waited write, Close. The linger
// is made an hour long, so only those events can end it.
func TestRecordLingerEndsWhenNeeded(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	const key = "agent:main:main"
	if _, err := s.EnsureSession(ctx, Session{Key: key}); err != nil {
		t.Fatal(err)
	}
	s.recLinger = time.Hour
	committed := func() int {
		t.Helper()
		var n int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM messages WHERE session_key = ?`, key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := s.RecordCall(ctx, callRecord(key, 0), key, false); err != nil {
		t.Fatal(err)
	}
	s.Flush(ctx, key)
	if got := committed(); got != 2 || ctx.Err() != nil {
		t.Fatalf("after Flush: %d messages committed (ctx %v), want 2", got, ctx.Err())
	}
	if _, err := s.RecordCall(ctx, callRecord(key, 1), key, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendMessage(ctx, Message{SessionKey: key, Role: RoleUser, Trust: TrustUser, Content: Content{Text: "waited"}}); err != nil {
		t.Fatal(err)
	}
	if got := committed(); got != 5 {
		t.Fatalf("after a waited write: %d messages committed, want 5", got)
	}
	if _, err := s.RecordCall(ctx, callRecord(key, 2), key, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	checkTranscript(t, s, key, []string{"c0", "c0", "c1", "c1", "waited", "c2", "c2"})
}

// Messages are inserted in multi-row statements of up to insertChunk rows:
// 40 messages of two sessions in one append (chunks of 16, 16 and 8) keep
// their order and seqs, and the text of each is searchable.
func TestAppendManyMessagesInChunks(t *testing.T) {
	s, a, b := openTwoSessions(t)
	ctx := context.Background()
	var msgs []Message
	var wantA, wantB []string
	for i := 0; i < 40; i++ {
		key, text := a, fmt.Sprintf("chunkword%d", i)
		if i%3 == 0 {
			key = b
			wantB = append(wantB, text)
		} else {
			wantA = append(wantA, text)
		}
		msgs = append(msgs, Message{SessionKey: key, Role: RoleUser, Trust: TrustUser, Content: Content{Text: text}})
	}
	if err := s.AppendMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	checkTranscript(t, s, a, wantA)
	checkTranscript(t, s, b, wantB)
	for _, i := range []int{0, 17, 31, 39} {
		word := fmt.Sprintf("chunkword%d", i)
		var keys []string
		if err := s.Search(ctx, SearchQuery{Query: word}, func(h Hit) bool { keys = append(keys, h.Key); return true }); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != msgs[i].SessionKey {
			t.Fatalf("search %s: hits in %v, want one in %s", word, keys, msgs[i].SessionKey)
		}
	}
}

// openTwoSessions opens a new store holding two empty sessions and
// returns it with their keys.
func openTwoSessions(t *testing.T) (s *Store, a, b string) {
	t.Helper()
	s = openTest(t, "")
	a, b = "agent:main:main", "agent:other:main"
	for _, k := range []string{a, b} {
		if _, err := s.EnsureSession(context.Background(), Session{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	return s, a, b
}
