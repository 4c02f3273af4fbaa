package store

import (
	"context"
	"database/sql"
	"sync/atomic"
)

// CallRecord is a tool call's transcript record (the call and its
// result, in the requester's session) written inside the call's own
// mutation (CreateRun), so a spawn costs the writer one transaction
// instead of two. The requester's undelivered announces are claimed in
// the same transaction, as RecordCall would: Claimed holds them once
// Committed is set.
type CallRecord struct {
	Messages  []Message
	Requester string

	Committed bool       // set when the transaction that carried it committed
	Claimed   []Announce // the announces claimed with it, oldest first
}

// claimForRecordTx claims rec's requester's announces inside tx, whose
// caller appends rec's messages in it too (only when some may be pending:
// the in-memory signal). It may run more than once (a retried batch): it
// starts over each time.
func (s *Store) claimForRecordTx(ctx context.Context, tx *sql.Tx, rec *CallRecord, gen uint64, now int64) error {
	rec.Claimed = nil
	if s.ann.isClear(rec.Requester, gen) {
		return nil
	}
	claimed, err := s.claimTx(ctx, tx, rec.Requester, now)
	rec.Claimed = claimed
	return err
}

// recorded finishes rec after its transaction committed.
func (s *Store) recorded(rec *CallRecord, gen uint64) {
	rec.Committed = true
	sortAnnounces(rec.Claimed)
	s.ann.markClear(rec.Requester, gen) // the claim took everything committed before gen
}

// WriteStats counts the writer's work since Open: what callers asked of
// it, not how it batched it.
type WriteStats struct {
	Waited  uint64 // writes whose caller waited for the commit (Tx and the methods built on it)
	Async   uint64 // writes handed over without waiting (read-only calls' records)
	Commits uint64 // transactions the writer committed (a batch is one)
	// Statements is how many statements writes ran inside the writer's
	// transactions (through exec, queryRow, txQuery and the message
	// INSERTs), a batch's rerun with savepoints included.
	Statements uint64
	// Checkpoints is how many times the background checkpointer copied the
	// WAL back (SQLite; checkpoint.go).
	Checkpoints uint64
}

type writeCounters struct {
	waited, async, commits, stmts atomic.Uint64
	notifySkipped                 atomic.Uint64 // notification claims left to one already queued
	checkpoints                   atomic.Uint64 // background checkpoints run (checkpointer)
}

// WriteStats returns the writer's counts so far (benchmarks and tests
// count writes per operation with it).
func (s *Store) WriteStats() WriteStats {
	return WriteStats{Waited: s.wstats.waited.Load(), Async: s.wstats.async.Load(), Commits: s.wstats.commits.Load(),
		Statements: s.wstats.stmts.Load(), Checkpoints: s.wstats.checkpoints.Load()}
}
