package store

import (
	"context"
	"errors"
	"testing"
)

// A run's end made conditional on deliveries (Outcome.UnlessDelivered) is
// refused, in its own transaction, when another session delivered a
// message to the run's session after the newest one the run read, even
// from another host: the final answer is kept, the run stays running, the
// lane's next run is not claimed. The run's own messages and the
// deliveries it read do not hold it.
//
// The end is checked alike whether the caller names the run's session
// (Outcome.ChildKey: one UPDATE holds the check), names a wrong one, or
// names none (the run row is read first).
func TestFinishUnlessDeliveredMeanwhile(t *testing.T) {
	for _, named := range []string{"", "agent:w:subagent:d1", "agent:w:subagent:wrong"} {
		t.Run("child="+named, func(t *testing.T) { finishUnlessDelivered(t, named) })
	}
}

func finishUnlessDelivered(t *testing.T, named string) {
	a, b := twoHosts(t)
	ctx := context.Background()
	const req = "agent:main:main"
	child := "agent:w:subagent:d1"
	r := &Run{ID: "d1", Kind: "spawn", ChildKey: child, RequesterKey: req, AgentID: "w", State: RunRunning}
	if err := a.CreateRun(ctx, &Session{Key: child}, []Message{{SessionKey: child, Role: RoleUser, Trust: TrustInterSession, Content: Content{Text: "task"}}}, r); err != nil {
		t.Fatal(err)
	}
	waiter := &Run{ID: "d2", Kind: "spawn", ChildKey: "agent:w:subagent:d2", RequesterKey: req, AgentID: "w"}
	if err := a.CreateRun(ctx, &Session{Key: waiter.ChildKey}, nil, waiter); err != nil {
		t.Fatal(err)
	}
	// The run's own tool call and result (after seq 1): not deliveries.
	if err := a.AppendMessages(ctx, []Message{
		{SessionKey: child, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "calling"}},
		{SessionKey: child, Role: RoleTool, Trust: TrustExternal, Content: Content{Text: "result"}},
	}); err != nil {
		t.Fatal(err)
	}
	// Another host delivers a message (a subagents send) after the run read seq 3.
	if err := b.AppendMessages(ctx, []Message{{SessionKey: child, Role: RoleUser, Trust: TrustInterSession, Content: Content{Text: "one more thing"}}}); err != nil {
		t.Fatal(err)
	}
	final := func(text string) Outcome {
		return Outcome{State: RunOK, ResultText: text, SessionStatus: "done", UnlessDelivered: true, ReadSeq: 3, ChildKey: named,
			Messages: []Message{{SessionKey: child, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: text}}}}
	}
	done, claimed, err := a.FinishRunAndClaim(ctx, r.ID, final("first answer"), &Announce{RequesterKey: req, Status: RunOK, Body: "d1 done"},
		&NextClaim{RunID: waiter.ID, Instance: "i", PID: 1})
	if !errors.Is(err, ErrDeliveredMeanwhile) || done || claimed != nil {
		t.Fatalf("end with a delivery after the read: done %v, claimed %v, err %v; want ErrDeliveredMeanwhile", done, claimed, err)
	}
	for id, want := range map[string]string{r.ID: RunRunning, waiter.ID: RunQueued} {
		if got, err := a.GetRun(ctx, id); err != nil || got.State != want {
			t.Fatalf("run %s: %+v (%v), want %s", id, got, err, want)
		}
	}
	if _, err := a.GetAnnounce(ctx, r.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an announce for a run that did not end: %v", err)
	}
	msgs, err := a.MessagesAfter(ctx, child, 4)
	if err != nil || len(msgs) != 1 || msgs[0].Content.Text != "first answer" || msgs[0].Seq != 5 {
		t.Fatalf("the answer kept: %+v (%v), want 'first answer' at seq 5", msgs, err)
	}
	// The run read up to seq 5 (the delivery and its answer): it ends, and
	// the waiter gets the slot.
	o := final("second answer")
	o.ReadSeq = 5
	done, claimed, err = a.FinishRunAndClaim(ctx, r.ID, o, &Announce{RequesterKey: req, Status: RunOK, Body: "d1 done"},
		&NextClaim{RunID: waiter.ID, Instance: "i", PID: 1})
	if err != nil || !done || claimed == nil || claimed.ID != waiter.ID {
		t.Fatalf("end after reading everything: done %v, claimed %v, err %v", done, claimed, err)
	}
	if got, err := a.GetRun(ctx, r.ID); err != nil || got.State != RunOK {
		t.Fatalf("run: %+v (%v), want ok", got, err)
	}
	if sess, err := a.GetSession(ctx, child); err != nil || sess.Status != "done" {
		t.Fatalf("the run's session: %+v (%v), want status done", sess, err)
	}
}

// A run killed while its last model call ran is not continued by a
// delivery: its end is refused as a killed run's is (nothing but the
// answer written), never ErrDeliveredMeanwhile.
func TestFinishUnlessDeliveredKilledRunEnds(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	child := "agent:w:subagent:k1"
	r := &Run{ID: "k1", Kind: "spawn", ChildKey: child, RequesterKey: "agent:main:main", AgentID: "w", State: RunRunning}
	if err := s.CreateRun(ctx, &Session{Key: child}, []Message{{SessionKey: child, Role: RoleUser, Trust: TrustInterSession, Content: Content{Text: "task"}}}, r); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendMessages(ctx, []Message{{SessionKey: child, Role: RoleUser, Trust: TrustInterSession, Content: Content{Text: "late"}}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.KillRun(ctx, r.ID, "killed", nil); err != nil || !ok {
		t.Fatalf("kill: %v %v", ok, err)
	}
	done, _, err := s.FinishRunAndClaim(ctx, r.ID, Outcome{State: RunOK, UnlessDelivered: true, ReadSeq: 1, ChildKey: child,
		Messages: []Message{{SessionKey: child, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "answer"}}}}, nil, nil)
	if err != nil || done {
		t.Fatalf("end of a killed run: done %v, err %v; want false, nil", done, err)
	}
	if got, err := s.GetRun(ctx, r.ID); err != nil || got.State != RunKilled {
		t.Fatalf("run: %+v (%v), want killed", got, err)
	}
}
