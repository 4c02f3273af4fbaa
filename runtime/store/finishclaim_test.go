package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"testing"
)

// FinishRunAndClaim records one run's end and claims the next queued run
// in the same transaction, under the claim's rules: the end comes first
// (so the next run of the same session may start), a run of a busy session
// or one not queued any more is not claimed, and the end is recorded
// whether the claim succeeds or not.
func TestFinishRunAndClaim(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	const req = "agent:m:main"
	add := func(id, child, state string) {
		t.Helper()
		if err := s.CreateRun(ctx, &Session{Key: child}, nil, &Run{ID: id, Kind: "spawn", ChildKey: child, RequesterKey: req, AgentID: "m", State: state}); err != nil {
			t.Fatal(err)
		}
	}
	state := func(id string) string {
		t.Helper()
		r, err := s.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r.State
	}
	add("a1", "agent:m:subagent:a", RunRunning)
	add("a2", "agent:m:subagent:a", RunQueued) // same session as a1
	add("b1", "agent:m:subagent:b", RunRunning)
	add("c1", "agent:m:subagent:c", RunRunning)
	add("c2", "agent:m:subagent:c", RunQueued) // its session stays busy (c1)

	var started []string
	start := func(opts json.RawMessage) ([]Message, json.RawMessage, error) {
		started = append(started, string(opts))
		return nil, nil, nil
	}
	// a1 ends and a2, of the same session, starts in that transaction.
	done, claimed, err := s.FinishRunAndClaim(ctx, "a1", Outcome{State: RunOK, SessionStatus: "done"}, &Announce{RequesterKey: req, Status: RunOK, Body: "a1"},
		&NextClaim{RunID: "a2", Instance: "me", PID: 7, Start: start})
	if err != nil || !done || claimed == nil {
		t.Fatalf("finish a1, claim a2: done %v claimed %v err %v", done, claimed, err)
	}
	r, _ := s.GetRun(ctx, "a2")
	if claimed.ID != "a2" || claimed.State != RunRunning || claimed.StartedAt != r.StartedAt || claimed.OwnerInstance != "me" {
		t.Fatalf("the claimed run as returned: %+v, stored: %+v", claimed, r)
	}
	if r.State != RunRunning || r.OwnerInstance != "me" || r.OwnerPID != 7 || r.StartedAt == 0 || len(started) != 1 {
		t.Fatalf("a2 after the hand-off: %+v (start called %d times)", r, len(started))
	}
	if sess, _ := s.GetSession(ctx, "agent:m:subagent:a"); sess.Status != "running" {
		t.Fatalf("a's session after a2 started: %q, want running", sess.Status)
	}
	if a, err := s.GetAnnounce(ctx, "a1"); err != nil || a.Body != "a1" {
		t.Fatalf("a1's announce: %+v %v", a, err)
	}
	// b1 ends; c2's session is busy (c1 runs): not claimed, b1 still ended.
	done, claimed, err = s.FinishRunAndClaim(ctx, "b1", Outcome{State: RunOK}, nil, &NextClaim{RunID: "c2", Instance: "me", PID: 7, Start: start})
	if err != nil || !done || claimed != nil {
		t.Fatalf("finish b1, claim c2 (busy session): done %v claimed %v err %v", done, claimed, err)
	}
	if got := state("c2"); got != RunQueued {
		t.Fatalf("c2: %q, want queued", got)
	}
	// c1 ends (a second time: no effect) and a2, running already, is not
	// claimed twice.
	if _, err := s.KillRun(ctx, "c1", "stop", nil); err != nil {
		t.Fatal(err)
	}
	done, claimed, err = s.FinishRunAndClaim(ctx, "c1", Outcome{State: RunOK}, nil, &NextClaim{RunID: "a2", Instance: "other", PID: 8, Start: start})
	if err != nil || done || claimed != nil {
		t.Fatalf("finish c1 again, claim a2 again: done %v claimed %v err %v", done, claimed, err)
	}
	if got := state("c1"); got != RunKilled {
		t.Fatalf("c1: %q, want killed (a kill is final)", got)
	}
	if r, _ := s.GetRun(ctx, "a2"); r.OwnerInstance != "me" || len(started) != 1 {
		t.Fatalf("a2 claimed twice: %+v", r)
	}
}

// ClaimNotificationsAsync claims each announce for notification once,
// like ClaimNotifications, and hands what it claimed over only after the
// claim committed; with nothing pending it writes nothing and calls
// nothing.
func TestClaimNotificationsAsyncOnce(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	const req = "agent:m:main"
	for _, id := range []string{"n1", "n2"} {
		if err := s.CreateRun(ctx, &Session{Key: "agent:m:subagent:" + id}, nil, &Run{ID: id, Kind: "spawn", ChildKey: "agent:m:subagent:" + id, RequesterKey: req, AgentID: "m", State: RunRunning}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishRun(ctx, id, Outcome{State: RunOK}, &Announce{RequesterKey: req, Status: RunOK, Body: id}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []Announce, 2)
	w0 := s.WriteStats()
	if err := s.ClaimNotificationsAsync(ctx, req, func(a []Announce) {
		var notified int
		// Called after the commit: a reader sees the claim.
		if err := s.DB().QueryRow(`SELECT count(*) FROM announces WHERE notified_at IS NOT NULL`).Scan(&notified); err != nil || notified != 2 {
			t.Errorf("announces marked notified when the claim is handed over: %d %v, want 2", notified, err)
		}
		got <- a
	}); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if len(a) != 2 || a[0].RunID != "n1" || a[1].RunID != "n2" {
		t.Fatalf("claimed: %+v, want n1 then n2", a)
	}
	if w := s.WriteStats(); w.Waited != w0.Waited || w.Async != w0.Async+1 {
		t.Fatalf("writes: %+v then %+v, want one write nobody waited for", w0, w)
	}
	// Nothing left: no write, no call; the waited form agrees.
	if err := s.ClaimNotificationsAsync(ctx, req, func(a []Announce) { got <- a }); err != nil {
		t.Fatal(err)
	}
	if again, err := s.ClaimNotifications(ctx, req); err != nil || len(again) != 0 {
		t.Fatalf("claimed again: %+v %v", again, err)
	}
	if w := s.WriteStats(); w.Async != w0.Async+1 {
		t.Fatalf("a claim with nothing pending was written: %+v", w)
	}
	select {
	case a := <-got:
		t.Fatalf("announces handed over twice: %+v", a)
	default:
	}
}

// A run's end writes its final answer and the announce's copy in the
// requester's transcript with one INSERT: the copy is there (user,
// inter_session), it is not full-text indexed (a search finds the answer
// once, in the child's session), and a requester session that does not
// exist gets no copy while the end is still recorded.
func TestFinishWritesTheAnnounceCopyUnindexed(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	const req, child = "agent:m:main", "agent:m:subagent:z"
	if _, err := s.EnsureSession(ctx, Session{Key: req}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"z1", "z2"} {
		r := &Run{ID: id, Kind: "spawn", ChildKey: child + id, RequesterKey: req, AgentID: "m", State: RunRunning}
		if id == "z2" {
			r.RequesterKey = "agent:m:gone"
		}
		if err := s.CreateRun(ctx, &Session{Key: r.ChildKey}, nil, r); err != nil {
			t.Fatal(err)
		}
	}
	final := Message{SessionKey: child + "z1", Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "zanzibar quokka"}}
	done, err := s.FinishRun(ctx, "z1", Outcome{State: RunOK, SessionStatus: "done", Messages: []Message{final}},
		&Announce{RequesterKey: req, Status: RunOK, Body: "Result: zanzibar quokka"})
	if err != nil || !done {
		t.Fatalf("finish z1: %v %v", done, err)
	}
	tr, err := s.Transcript(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	last := tr[len(tr)-1]
	if last.Content.Text != "Result: zanzibar quokka" || last.Role != RoleUser || last.Trust != TrustInterSession {
		t.Fatalf("the requester's last message: %+v", last)
	}
	if sess, _ := s.GetSession(ctx, req); sess.MessageCount != int(last.Seq) {
		t.Fatalf("requester message_count %d, last seq %d", sess.MessageCount, last.Seq)
	}
	var keys []string
	if err := s.Search(ctx, SearchQuery{Query: "zanzibar quokka"}, func(h Hit) bool { keys = append(keys, h.Key); return true }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != child+"z1" {
		t.Fatalf("search hits %v, want the child's answer only", keys)
	}
	done, err = s.FinishRun(ctx, "z2", Outcome{State: RunOK, Messages: []Message{{SessionKey: child + "z2", Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "ok"}}}},
		&Announce{RequesterKey: "agent:m:gone", Status: RunOK, Body: "Result: ok"})
	if err != nil || !done {
		t.Fatalf("finish z2 (requester session missing): %v %v", done, err)
	}
	if a, err := s.GetAnnounce(ctx, "z2"); err != nil || a.Body != "Result: ok" {
		t.Fatalf("z2's announce: %+v %v", a, err)
	}
}

// Notification claims asked for while one for the same requester waits in
// the writer's queue are left to it: it runs after their announces were
// committed, so one claim hands them all over, once. A claim asked for
// after the queued one started is queued anew.
func TestClaimNotificationsAsyncJoinsTheQueuedClaim(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	const req = "agent:m:main"
	finish := func(id string) {
		t.Helper()
		if err := s.CreateRun(ctx, &Session{Key: "agent:m:subagent:" + id}, nil, &Run{ID: id, Kind: "spawn", ChildKey: "agent:m:subagent:" + id, RequesterKey: req, AgentID: "m", State: RunRunning}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishRun(ctx, id, Outcome{State: RunOK}, &Announce{RequesterKey: req, Status: RunOK, Body: id}); err != nil {
			t.Fatal(err)
		}
	}
	finish("j1")
	// Hold the writer so the claim stays queued.
	hold, held, released := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() { released <- s.Tx(ctx, func(*sql.Tx) error { close(held); <-hold; return nil }) }()
	<-held
	got := make(chan []Announce, 4)
	for i := 0; i < 3; i++ {
		if err := s.ClaimNotificationsAsync(ctx, req, func(a []Announce) { got <- a }); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.wstats.notifySkipped.Load(); n != 2 {
		t.Fatalf("claims left to the queued one: %d, want 2", n)
	}
	close(hold)
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if a := <-got; len(a) != 1 || a[0].RunID != "j1" {
		t.Fatalf("claimed: %+v, want j1", a)
	}
	// The queued claim ran: the next one is queued again and takes j2.
	finish("j2")
	if err := s.ClaimNotificationsAsync(ctx, req, func(a []Announce) { got <- a }); err != nil {
		t.Fatal(err)
	}
	if a := <-got; len(a) != 1 || a[0].RunID != "j2" {
		t.Fatalf("claimed: %+v, want j2", a)
	}
	select {
	case a := <-got:
		t.Fatalf("announces handed over twice: %+v", a)
	default:
	}
}
