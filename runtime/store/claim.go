package store

// Claims: a queued run moves to running for one instance, in a write
// transaction that also checks its session is not busy (one turn at a time
// per session, oldest first), so no run is executed twice, whichever
// processes or hosts share the store.

import (
	"context"
	"database/sql"
	"encoding/json"
)

// ClaimRun moves a queued run to running for this instance. It returns
// false when another process claimed it first, it is no longer queued, or
// its session is busy: one turn at a time per session, oldest run id
// first (run ids are uuid v7, so a run submitted after another one was
// accepted comes after it; two submitted at the same moment may go in
// either order). So no run is executed twice and no two runs interleave in
// one transcript, whichever processes run them.
func (s *Store) ClaimRun(ctx context.Context, id, instance string, pid int) (bool, error) {
	return s.ClaimRunWith(ctx, id, instance, pid, nil)
}

// StartFunc is given a run's stored options when it is claimed and returns
// the messages that start it (appended in the claim's transaction) and the
// options to store instead (nil = unchanged).
type StartFunc func(options json.RawMessage) (msgs []Message, newOptions json.RawMessage, err error)

// ClaimRunWith is ClaimRun that also, in the same transaction, appends the
// messages start returns for the run (a queued turn's message enters the
// transcript when its turn starts, and never later than the claim: a
// process killed right after claiming cannot lose an acknowledged message).
func (s *Store) ClaimRunWith(ctx context.Context, id, instance string, pid int, start StartFunc) (bool, error) {
	r, err := s.ClaimRunFor(ctx, id, instance, pid, start)
	return r != nil, err
}

// ClaimRunFor is ClaimRunWith that returns the claimed run as it is
// after the claim, read in the claim's transaction (nil when it was not
// claimed): whoever executes it needs no second read.
func (s *Store) ClaimRunFor(ctx context.Context, id, instance string, pid int, start StartFunc) (*Run, error) {
	var r *Run
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		r, err = s.claimRunSeqTx(ctx, tx, id, instance, pid, start, s.nowMS())
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// claimRunTx is ClaimRunFor's work inside tx (also done by
// FinishRunAndClaim): nil when the run is not queued or its session is
// busy.
func (s *Store) claimRunTx(ctx context.Context, tx *sql.Tx, id, instance string, pid int, start StartFunc, now int64) (*Run, error) {
	// UPDATE then SELECT: an UPDATE ... RETURNING of the row costs as
	// much (SQLite fills an ephemeral table with what it returns).
	res, err := s.exec(ctx, tx, `UPDATE runs SET state = 'running', owner_instance = ?, owner_pid = ?, started_at = ?, heartbeat_at = ?
		WHERE id = ? AND state = 'queued'
		AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.child_key = runs.child_key AND o.id != runs.id
			AND (o.state = 'running' OR (o.state = 'queued' AND o.id < runs.id)))`, instance, pid, now, now, id)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return nil, err
	}
	// The row and the seq of its session's newest message (before this
	// claim's appends) in one statement.
	var last int64
	r, err := scanRun(s.queryRow(ctx, tx, "SELECT "+runCols+`, (SELECT COALESCE(max(seq), 0) FROM messages WHERE session_key = runs.child_key)
		FROM runs WHERE id = ?`, id), &last)
	if err != nil {
		return nil, err
	}
	set := &sessionSet{key: r.ChildKey, status: "running"}
	var msgs []Message
	var newOpts json.RawMessage
	if start != nil {
		if msgs, newOpts, err = start(r.Options); err != nil {
			return nil, err
		}
	}
	if len(msgs) > 0 {
		// The session's status goes into the append's UPDATE when a
		// message is for it.
		if err := s.appendMessagesSetTx(ctx, tx, msgs, now, set); err != nil {
			return nil, err
		}
		for i := range msgs { // appended after every message read above
			if msgs[i].SessionKey == r.ChildKey {
				last = max(last, msgs[i].Seq)
			}
		}
	} else if err := s.setSessionTx(ctx, tx, set, now); err != nil {
		return nil, err
	}
	if newOpts != nil {
		if _, err := s.exec(ctx, tx, `UPDATE runs SET options = ? WHERE id = ?`, string(newOpts), id); err != nil {
			return nil, err
		}
		r.Options = newOpts
	}
	r.SessionLastSeq = last
	return r, nil
}

// claimRunSeqTx is claimRunTx, which also sets Run.SessionLastSeq: the
// seq of the newest message of the claimed run's session as the claim
// left it, read from the messages themselves (the row's statement reads
// them; the claim's own appends are counted from their seqs), so it holds
// whatever this transaction appended, however the session row's counters
// are kept.
func (s *Store) claimRunSeqTx(ctx context.Context, tx *sql.Tx, id, instance string, pid int, start StartFunc, now int64) (*Run, error) {
	return s.claimRunTx(ctx, tx, id, instance, pid, start, now)
}
