package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Outcome is how a run ended.
type Outcome struct {
	State      string
	Note       string
	ResultText string
	ResultJSON json.RawMessage
	Iterations int
	ToolCalls  int
	TokensIn   int64
	TokensOut  int64
	CostUSD    float64
	// SessionStatus, when set, is written to the run's session in the same
	// transaction.
	SessionStatus string
	// ModelServed, when set, is recorded on the run and its session in the
	// same transaction (the model the provider said answered last).
	ModelServed string
	// Archive archives the run's session in the same transaction (cleanup
	// delete, closeAfterYield).
	Archive bool
	// Messages are appended in the same transaction (the run's final
	// answer), whether or not the run had already ended: what the model
	// said is kept either way.
	Messages []Message
	// UnlessDelivered makes the end conditional on the run's session: when
	// another session delivered a message to it (trust inter_session, role
	// user or system: a sessions_send, a subagents send, a child's
	// announce) after seq ReadSeq, the newest message the run has read,
	// the run does not end. Messages are appended, nothing else is
	// written, no run is claimed, and FinishRunAndClaim returns
	// ErrDeliveredMeanwhile: the run has input its answer did not see.
	// The check is in the end's transaction, so a delivery committed by
	// any process either comes before it (seen here) or after the run's
	// end (left for the session's next run).
	UnlessDelivered bool
	ReadSeq         int64
	// ChildKey, when the caller knows it, is the run's session: the end
	// then reads nothing before its UPDATE (a wrong one costs that read).
	ChildKey string
}

// ErrDeliveredMeanwhile is returned by FinishRun and FinishRunAndClaim
// when an Outcome with UnlessDelivered found a message delivered after its
// ReadSeq: the outcome's messages were committed, the run was not ended.
var ErrDeliveredMeanwhile = errors.New("store: a message was delivered to the run's session after the newest one it read")

// Announce is a durable completion notice for a requester.
type Announce struct {
	ID           int64
	RunID        string
	RequesterKey string
	Status       string
	Body         string
	Silent       bool
	CreatedAt    int64
	DeliveredAt  int64
}

// FinishRun records a run's end and its announce in one transaction, and
// appends the announce to the requester's transcript. It returns false
// (and writes nothing) when the run had already ended: a kill is final, a
// late completion cannot overwrite it. announce may be nil (no announce).
func (s *Store) FinishRun(ctx context.Context, id string, o Outcome, announce *Announce) (bool, error) {
	done, _, err := s.FinishRunAndClaim(ctx, id, o, announce, nil)
	return done, err
}

// NextClaim names a queued run to claim (as ClaimRunWith) in the
// transaction that records another run's end: the lane slot the ending run
// held passes straight to the next one, in one write instead of two.
type NextClaim struct {
	RunID    string
	Instance string
	PID      int
	Start    StartFunc
}

// FinishRunAndClaim is FinishRun that also, when next is non-nil, claims
// next's run in the same transaction (after the end is recorded, so a run
// of the same session may start) and returns it as ClaimRunFor does.
// claimed is nil when that run is not queued any more or its session is
// busy; the end is recorded either way.
func (s *Store) FinishRunAndClaim(ctx context.Context, id string, o Outcome, announce *Announce, next *NextClaim) (done bool, claimed *Run, err error) {
	for i := range o.Messages {
		if !validRole(o.Messages[i].Role) || !validTrust(o.Messages[i].Trust) {
			return false, nil, fmt.Errorf("store: outcome message %d: bad role or trust", i)
		}
	}
	tx := s.Tx
	if next == nil {
		tx = s.patientTx // nobody waits for a slot: the end may wait for company
	}
	more := false
	err = tx(ctx, func(tx *sql.Tx) error {
		done, claimed, more = false, nil, false
		now := s.nowMS()
		ended, err := s.finishRunTx(ctx, tx, id, o, announce, now, &more)
		if err != nil || next == nil || more {
			done = ended
			return err
		}
		claimed, err = s.claimRunSeqTx(ctx, tx, next.RunID, next.Instance, next.PID, next.Start, now)
		done = ended
		return err
	})
	if err == nil && more {
		return false, nil, ErrDeliveredMeanwhile
	}
	if err == nil && done && announce != nil {
		s.ann.announced()
	}
	return done, claimed, err
}

// patientTx is Tx for a write whose caller waits for its commit but need
// not hurry it: in the writer it counts as a write nobody waits for, so a
// batch holding only such writes waits up to recordLinger for company
// (any write that is waited for ends that wait). A run's end commits with
// the next spawn instead of on its own: one commit fewer per run when runs
// end one at a time. It returns once committed, as Tx does.
func (s *Store) patientTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.waitFor(&txReq{ctx: ctx, fn: fn, done: make(chan error, 1), committed: make(chan struct{})})
}

// finishRunTx is FinishRun's work inside tx: false when the run had
// already ended (nothing is written but o.Messages).
//
// The run's session is known before its row is updated, so the session's
// status, archive mark and served model go into the same UPDATE that
// appends the final answer: one statement per session row.
//
// With o.UnlessDelivered, *more is set (and the run not ended) when a
// message was delivered to the run's session after o.ReadSeq.
func (s *Store) finishRunTx(ctx context.Context, tx *sql.Tx, id string, o Outcome, announce *Announce, now int64, more *bool) (bool, error) {
	var resJSON any
	if len(o.ResultJSON) > 0 {
		resJSON = string(o.ResultJSON)
	}
	end := func(where string, args ...any) (bool, error) {
		res, err := s.exec(ctx, tx, `UPDATE runs SET state = ?, note = ?, result_text = ?, result_json = ?, iterations = ?, tool_calls = ?,
			tokens_in = ?, tokens_out = ?, cost_usd = ?, ended_at = ?, started_at = COALESCE(started_at, ?),
			model_served = CASE WHEN ? = '' THEN model_served ELSE ? END
			WHERE id = ? AND state IN ('queued', 'running', 'input_required')`+where,
			append([]any{o.State, o.Note, o.ResultText, resJSON, o.Iterations, o.ToolCalls, o.TokensIn, o.TokensOut, o.CostUSD, now, now,
				o.ModelServed, o.ModelServed, id}, args...)...)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n == 1, err
	}
	// With o.UnlessDelivered the end looks for a message delivered to the
	// run's session after o.ReadSeq, in the writer's transaction: no read
	// transaction of its own, and nothing committed by any process can slip
	// between the check and the end. A run that has ended (killed
	// meanwhile) goes on with nothing, so only a running run is held.
	const deliveredTo = `EXISTS (SELECT 1 FROM messages m WHERE m.session_key = %s AND m.seq > ?
		AND m.trust = 'inter_session' AND m.role NOT IN ('assistant', 'tool'))`
	child := o.ChildKey
	ended := false
	if child != "" {
		// The caller named the run's session: the end is one UPDATE that
		// also holds the check, and nothing is read first when it ends.
		var err error
		if o.UnlessDelivered {
			ended, err = end(` AND child_key = ? AND NOT (state = 'running' AND `+fmt.Sprintf(deliveredTo, "?")+`)`, child, child, o.ReadSeq)
		} else {
			ended, err = end(` AND child_key = ?`, child)
		}
		if err != nil {
			return false, err
		}
	}
	if !ended {
		// The run's session, read (a RETURNING clause costs SQLite an
		// ephemeral table per execution, about 12 µs, more than this
		// read), and why the UPDATE above did not end the run: a delivery,
		// the run already ended, or no session named.
		var delivered int
		var err error
		if o.UnlessDelivered {
			err = s.queryRow(ctx, tx, `SELECT child_key, CASE WHEN state = 'running' AND `+fmt.Sprintf(deliveredTo, "runs.child_key")+`
				THEN 1 ELSE 0 END FROM runs WHERE id = ?`, o.ReadSeq, id).Scan(&child, &delivered)
		} else {
			err = s.queryRow(ctx, tx, `SELECT child_key FROM runs WHERE id = ?`, id).Scan(&child)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
		if delivered > 0 {
			*more = true
			return false, s.appendRunMessagesTx(ctx, tx, o.Messages, now)
		}
		if o.ChildKey == "" || (child != "" && child != o.ChildKey) {
			if ended, err = end(""); err != nil {
				return false, err
			}
		}
	}
	var set *sessionSet
	if ended && (o.SessionStatus != "" || o.Archive || o.ModelServed != "") {
		set = &sessionSet{key: child, status: o.SessionStatus, archive: o.Archive, modelServed: o.ModelServed}
	}
	// The run's own messages are appended whether or not it had ended:
	// what the model said is kept either way.
	msgs := o.Messages
	bodies, err := s.encodeMessages(msgs)
	if err != nil {
		return false, err
	}
	optional := ""
	if ended && announce != nil {
		if err := s.insertAnnounceRow(ctx, tx, id, announce, now); err != nil {
			return false, err
		}
		// The announce also lands in the requester's transcript (when that
		// session exists), in the INSERT of the final answer. It is not
		// full-text indexed: the child's answer is indexed in the child's
		// session, and indexing its copy would double every hit. Nor is it
		// held to the message size limits: a run's end never fails on it.
		b, err := json.Marshal(Content{Text: announce.Body})
		if err != nil {
			return false, err
		}
		msgs = append(msgs[:len(msgs):len(msgs)], Message{SessionKey: announce.RequesterKey, Role: RoleUser, Trust: TrustInterSession,
			Content: Content{Text: announce.Body}, CreatedAt: now, noIndex: true})
		bodies = append(bodies, string(b))
		optional = announce.RequesterKey
	}
	if len(msgs) > 0 {
		if err := s.appendSetTx(ctx, tx, msgs, bodies, now, set, optional); err != nil {
			return false, err
		}
	} else if err := s.setSessionTx(ctx, tx, set, now); err != nil {
		return false, err
	}
	if !ended {
		return false, nil
	}
	return true, s.Notify(ctx, tx, TopicRuns)
}

// appendRunMessagesTx appends a run's own messages (an outcome's) in tx.
func (s *Store) appendRunMessagesTx(ctx context.Context, tx *sql.Tx, msgs []Message, now int64) error {
	if len(msgs) == 0 {
		return nil
	}
	bodies, err := s.encodeMessages(msgs)
	if err != nil {
		return err
	}
	return s.appendSetTx(ctx, tx, msgs, bodies, now, nil, "")
}

// insertAnnounceRow writes the announce's row (once per run) and wakes
// its watchers.
func (s *Store) insertAnnounceRow(ctx context.Context, tx *sql.Tx, runID string, a *Announce, now int64) error {
	silent := 0
	if a.Silent {
		silent = 1
	}
	if _, err := s.exec(ctx, tx, `INSERT INTO announces (run_id, requester_key, status, body, silent, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING`, runID, a.RequesterKey, a.Status, a.Body, silent, now); err != nil {
		return err
	}
	return s.Notify(ctx, tx, TopicAnnounces)
}

// KillRun marks a queued or running run killed (with its announce). It
// returns false when the run had already ended.
func (s *Store) KillRun(ctx context.Context, id, note string, announce *Announce) (bool, error) {
	return s.FinishRun(ctx, id, Outcome{State: RunKilled, Note: note, SessionStatus: RunKilled}, announce)
}

// ClaimAnnounces marks every undelivered, non-silent announce for the
// requester delivered and returns them, in one transaction: each is handed
// out exactly once, even with several processes.
func (s *Store) ClaimAnnounces(ctx context.Context, requester string) ([]Announce, error) {
	return s.RecordAndClaim(ctx, nil, requester)
}

// RecordAndClaim appends msgs (may be none) and claims requester's
// undelivered announces in one transaction, and returns once both are
// committed: RecordCall with durable set.
func (s *Store) RecordAndClaim(ctx context.Context, msgs []Message, requester string) ([]Announce, error) {
	return s.RecordCall(ctx, msgs, requester, true)
}

func validMessages(msgs []Message) error {
	for i := range msgs {
		if !validRole(msgs[i].Role) || !validTrust(msgs[i].Trust) {
			return fmt.Errorf("store: message %d: bad role %q or trust %q", i, msgs[i].Role, msgs[i].Trust)
		}
	}
	return nil
}

// recordAndClaimTx appends msgs and, with claim, takes requester's
// undelivered announces, in one waited transaction.
func (s *Store) recordAndClaimTx(ctx context.Context, msgs []Message, requester string, claim bool) ([]Announce, error) {
	var out []Announce
	now := s.nowMS()
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		out = nil
		if len(msgs) > 0 {
			if err := s.appendMessagesTx(ctx, tx, msgs, now); err != nil {
				return err
			}
		}
		if !claim {
			return nil
		}
		var err error
		out, err = s.claimTx(ctx, tx, requester, now)
		return err
	})
	sortAnnounces(out)
	return out, err
}

// claimTx marks requester's undelivered announces delivered inside tx and
// returns them.
func (s *Store) claimTx(ctx context.Context, tx *sql.Tx, requester string, now int64) ([]Announce, error) {
	rows, err := s.txQuery(ctx, tx, `UPDATE announces SET delivered_at = ? WHERE requester_key = ? AND delivered_at IS NULL AND silent = 0
		RETURNING id, run_id, requester_key, status, body, created_at`, now, requester)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Announce
	for rows.Next() {
		a := Announce{DeliveredAt: now}
		if err := rows.Scan(&a.ID, &a.RunID, &a.RequesterKey, &a.Status, &a.Body, &a.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func sortAnnounces(a []Announce) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j].ID < a[j-1].ID; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// GetAnnounce returns a run's announce, or ErrNotFound.
func (s *Store) GetAnnounce(ctx context.Context, runID string) (*Announce, error) {
	var a Announce
	var silent int
	var delivered sql.NullInt64
	err := s.readRow(ctx, `SELECT id, run_id, requester_key, status, body, silent, created_at, delivered_at FROM announces WHERE run_id = ?`, runID).
		Scan(&a.ID, &a.RunID, &a.RequesterKey, &a.Status, &a.Body, &silent, &a.CreatedAt, &delivered)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("announce of run %q: %w", runID, ErrNotFound)
	}
	a.Silent, a.DeliveredAt = silent == 1, delivered.Int64
	return &a, err
}

// ClaimNotifications returns announces not yet sent as a notification and
// marks them sent (a best-effort channel; delivery proper is ClaimAnnounces).
func (s *Store) ClaimNotifications(ctx context.Context, requester string) ([]Announce, error) {
	var pending int
	if err := s.readRow(ctx, `SELECT count(*) FROM announces WHERE requester_key = ? AND notified_at IS NULL AND silent = 0`, requester).Scan(&pending); err != nil {
		return nil, err
	}
	if pending == 0 {
		return nil, nil
	}
	var out []Announce
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = s.claimNotificationsTx(ctx, tx, requester)
		return err
	})
	sortAnnounces(out)
	return out, err
}

// claimNotificationsTx marks requester's announces not yet notified
// notified inside tx and returns them.
func (s *Store) claimNotificationsTx(ctx context.Context, tx *sql.Tx, requester string) ([]Announce, error) {
	rows, err := s.txQuery(ctx, tx, `UPDATE announces SET notified_at = ? WHERE requester_key = ? AND notified_at IS NULL AND silent = 0
		RETURNING id, run_id, requester_key, status, body, created_at`, s.nowMS(), requester)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Announce
	for rows.Next() {
		var a Announce
		if err := rows.Scan(&a.ID, &a.RunID, &a.RequesterKey, &a.Status, &a.Body, &a.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ClaimNotificationsAsync is ClaimNotifications without waiting for the
// claim's commit: it is handed to the writer, commits with whatever else
// is queued (a best-effort notification needs no commit of its own), and
// then is called with what it claimed once committed (not when nothing
// was pending or the claim failed). then runs on the writer's goroutine:
// it must not block.
func (s *Store) ClaimNotificationsAsync(ctx context.Context, requester string, then func([]Announce)) error {
	var pending int
	if err := s.readRow(ctx, `SELECT count(*) FROM announces WHERE requester_key = ? AND notified_at IS NULL AND silent = 0`, requester).Scan(&pending); err != nil {
		return err
	}
	if pending == 0 {
		return nil
	}
	// A claim for requester queued and not started yet takes these
	// announces too (they were committed before this call, so before it
	// runs): one claim serves every run that ended meanwhile.
	if _, queued := s.notifyQueued.LoadOrStore(requester, struct{}{}); queued {
		s.wstats.notifySkipped.Add(1)
		return nil
	}
	var out []Announce
	bg := context.Background()
	req := &txReq{ctx: bg, done: make(chan error, 1), committed: make(chan struct{})}
	req.fn = func(tx *sql.Tx) error {
		// From here on a new call queues a claim of its own: this one may
		// not see its announces.
		s.notifyQueued.Delete(requester)
		var err error
		out, err = s.claimNotificationsTx(bg, tx, requester)
		return err
	}
	req.after = func(err error) {
		if err != nil {
			s.log.Warn("store: announce notifications not claimed", "requester", requester, "err", err)
			return
		}
		if len(out) > 0 {
			sortAnnounces(out)
			then(out)
		}
	}
	s.wstats.async.Add(1)
	select {
	case s.writes <- req:
		return nil
	case <-s.stop:
		s.notifyQueued.Delete(requester)
		req.answer(ErrClosed)
		return ErrClosed
	case <-ctx.Done():
		s.notifyQueued.Delete(requester)
		return ctx.Err()
	}
}

// MarkAnnounceDelivered marks a run's announce delivered (and notified):
// its content reached the requester another way (a waited-for reply).
func (s *Store) MarkAnnounceDelivered(ctx context.Context, runID string) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		now := s.nowMS()
		_, err := s.exec(ctx, tx, `UPDATE announces SET delivered_at = COALESCE(delivered_at, ?), notified_at = COALESCE(notified_at, ?) WHERE run_id = ?`, now, now, runID)
		return err
	})
}
