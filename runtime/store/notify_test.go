package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// bounded waits for ch; the bound only turns a hang into a failure.
func bounded(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no wake-up: %s", what)
	}
}

func finishRun(t *testing.T, s *Store, id string) {
	t.Helper()
	ctx := context.Background()
	r := &Run{ID: id, ChildKey: "agent:w:subagent:" + id, RequesterKey: "agent:main:main", AgentID: "w"}
	if err := s.CreateRun(ctx, &Session{Key: r.ChildKey}, nil, r); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.FinishRun(ctx, id, Outcome{State: RunOK}, &Announce{RequesterKey: "agent:main:main", Status: "ok", Body: "done"}); err != nil || !ok {
		t.Fatalf("finish %s: %v %v", id, ok, err)
	}
}

func TestWakeIsNilOnSQLite(t *testing.T) {
	if testdb.Postgres() {
		t.Skip("this test is about the SQLite backend; the suite runs on PostgreSQL")
	}
	s := openTest(t, "")
	if s.Wake(TopicRuns) != nil {
		t.Fatal("Wake on SQLite should be nil: no cross-process wake-ups there, waiters poll")
	}
	if err := s.Tx(context.Background(), func(tx *sql.Tx) error { return s.Notify(context.Background(), tx, TopicRuns) }); err != nil {
		t.Fatalf("Notify on SQLite is a no-op, got %v", err)
	}
}

// A commit in one Store wakes the waiters of another Store on the same
// database (another host), by topic.
func TestNotifyWakesOtherHost(t *testing.T) {
	if !testdb.Postgres() {
		t.Skip("LISTEN/NOTIFY is PostgreSQL's: set " + testdb.Env + " to run it")
	}
	a, b := twoHosts(t)
	runs, anns, msgs := b.Wake(TopicRuns), b.Wake(TopicAnnounces), b.Wake(TopicMessages)
	finishRun(t, a, "r1")
	bounded(t, runs, "B waiting for runs after A finished one")
	bounded(t, anns, "B waiting for announces after A wrote one")
	select {
	case <-msgs:
		t.Fatal("B's messages waiter woke, but no reply was appended")
	default:
	}
	// A reply wakes the messages topic.
	ctx := context.Background()
	msgs = b.Wake(TopicMessages)
	if _, err := a.AppendMessage(ctx, Message{SessionKey: "agent:w:subagent:r1", Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "the reply"}}); err != nil {
		t.Fatal(err)
	}
	bounded(t, msgs, "B waiting for a reply appended by A")
}

// Schemas do not share wake-ups.
func TestNotifyStaysInItsSchema(t *testing.T) {
	if !testdb.Postgres() {
		t.Skip("LISTEN/NOTIFY is PostgreSQL's: set " + testdb.Env + " to run it")
	}
	a := openTest(t, testdb.DSN(t, "a.db"))
	other := openTest(t, testdb.DSN(t, "b.db"))
	if a.channel == other.channel {
		t.Fatalf("two schemas share the channel %q", a.channel)
	}
	otherRuns := other.Wake(TopicRuns)
	finishRun(t, a, "r1")
	// A marker committed after A's run end, on other's own channel.
	marker := other.Wake(TopicMessages)
	if _, err := other.EnsureSession(context.Background(), Session{Key: "agent:x:main"}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AppendMessage(context.Background(), Message{SessionKey: "agent:x:main", Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "marker"}}); err != nil {
		t.Fatal(err)
	}
	bounded(t, marker, "other's own marker")
	select {
	case <-otherRuns:
		t.Fatal("a run ended in another schema woke this schema's waiters")
	default:
	}
}

// A lost listener connection wakes every waiter (something may have been
// missed), reconnects, and delivers notifications again.
func TestNotifyListenerReconnects(t *testing.T) {
	if !testdb.Postgres() {
		t.Skip("LISTEN/NOTIFY is PostgreSQL's: set " + testdb.Env + " to run it")
	}
	a, b := twoHosts(t)
	ctx := context.Background()
	old := b.wakes.pid.Load()
	lost := b.Wake(TopicMessages)
	var killed bool
	if err := a.QueryRow(ctx, `SELECT pg_terminate_backend(CAST(? AS INTEGER))`, int64(old)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the listener's backend %d: %v %v", old, killed, err)
	}
	bounded(t, lost, "waiters after the listener's connection was lost")
	for i := 0; b.wakes.pid.Load() == old || b.wakes.pid.Load() == 0; i++ {
		if i > 100 {
			t.Fatal("the listener did not reconnect")
		}
		bounded(t, b.Wake(TopicAnnounces), "a wake-up of the reconnect loop")
	}
	runs := b.Wake(TopicRuns)
	finishRun(t, a, fmt.Sprintf("after-%d", old))
	bounded(t, runs, "B waiting for runs after the listener reconnected")
}

// A search_path naming no existing schema is refused with the fix.
func TestPostgresMissingSchemaNamed(t *testing.T) {
	if !testdb.Postgres() {
		t.Skip("about PostgreSQL's search_path: set " + testdb.Env + " to run it")
	}
	u, err := url.Parse(testdb.DSN(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", "no_such_schema_here")
	u.RawQuery = q.Encode()
	_, err = Open(context.Background(), u.String(), nil)
	if err == nil || !strings.Contains(err.Error(), "no schema") || !strings.Contains(err.Error(), "search_path") {
		t.Fatalf("open with a missing schema: %v, want it named with the fix", err)
	}
}

// On PostgreSQL an announce can commit after one with a higher id (ids are
// handed out at insert); the in-memory announce signal must still move, or
// the requester's next call would not look for it.
func TestAnnounceCommittedOutOfIdOrderIsSeen(t *testing.T) {
	if !testdb.Postgres() {
		t.Skip("ids are handed out in commit order on SQLite: set " + testdb.Env + " to run it")
	}
	for _, notify := range []bool{true, false} {
		t.Run(map[bool]string{true: "notified", false: "polled"}[notify], func(t *testing.T) { outOfIdOrder(t, notify) })
	}
}

func outOfIdOrder(t *testing.T, notify bool) {
	a, b := twoHosts(t)
	ctx := context.Background()
	const req = "agent:main:main"
	if _, err := a.EnsureSession(ctx, Session{Key: req}); err != nil {
		t.Fatal(err)
	}
	if anns, err := b.RecordCall(ctx, nil, req, false); err != nil || len(anns) != 0 {
		t.Fatalf("nothing pending: %v %v", anns, err)
	}
	// "low" takes its id first but commits last, as a slow writer would.
	low, err := a.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer low.Rollback()
	if _, err := low.ExecContext(ctx, `INSERT INTO announces (run_id, requester_key, status, body, created_at) VALUES ('low', ?, 'ok', 'low', 1)`, req); err != nil {
		t.Fatal(err)
	}
	if notify {
		if err := a.Notify(ctx, low, TopicAnnounces); err != nil {
			t.Fatal(err)
		}
	}
	finishRun(t, a, "high")
	if err := b.PollAnnounces(ctx); err != nil {
		t.Fatal(err)
	}
	anns, err := b.RecordCall(ctx, nil, req, false)
	if err != nil || len(anns) != 1 || anns[0].RunID != "high" {
		t.Fatalf("first claim: %v %v, want high", anns, err)
	}
	woke := b.Wake(TopicAnnounces)
	if err := low.Commit(); err != nil {
		t.Fatal(err)
	}
	if notify {
		bounded(t, woke, "B after the lower-id announce committed")
	} else {
		// No notification (a listener that is down): the writer's advance of
		// the change counter after its commit, then the heartbeat's poll.
		if _, err := a.DB().ExecContext(ctx, "SELECT nextval('changes')"); err != nil {
			t.Fatal(err)
		}
		if err := b.PollAnnounces(ctx); err != nil {
			t.Fatal(err)
		}
	}
	anns, err = b.RecordCall(ctx, nil, req, false)
	if err != nil || len(anns) != 1 || anns[0].RunID != "low" {
		t.Fatalf("after the late commit: %v %v, want low (hidden by the in-memory signal?)", anns, err)
	}
}
