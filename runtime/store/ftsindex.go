package store

import (
	"context"
	"database/sql"
)

// The full-text index of transcript messages (SQLite's messages_fts) is
// filled once per write transaction, just before its commit, instead of by
// an insert trigger per statement (migration 0015).
//
// Why: FTS5 keeps a transaction's new entries in memory and must write
// them out as a segment whenever a statement opens a statement savepoint
// (xSavepoint flushes to disk). Every INSERT into messages did (its trigger
// made it a multi-row write), so each append wrote a segment of its own and
// the next statement paid the flush (a fifth of the append path's CPU),
// and the many small segments were merged again later. Indexed at the end,
// a transaction writes one segment, whatever number of appends it holds.
//
// How: before a transaction's first new message, the largest message id
// is noted once (markIndex reads it; an append's INSERT reports it instead,
// markIndexFrom). The write lock is held from BEGIN IMMEDIATE on, so no
// other process inserts meanwhile, and new ids are larger. commitWrite then
// indexes every message with text and a larger id, whoever inserted it in
// the transaction (an append, a fork's copy, a Copy into this store),
// unless it is indexed already. A message inserted and deleted in the same
// transaction is not in the index, so the delete trigger only removes
// entries that exist (messages_fts_docsize). A transaction that inserts no
// message does nothing more. On PostgreSQL the INSERT carries the search
// vector itself: nothing to do.
//
// Every statement that inserts into messages must come after markIndex in
// its transaction, or be an append's INSERT followed by markIndexFrom
// (TestEveryMessagePathIsIndexed).

// indexMarkSQL is the id above which this transaction's messages lie.
const indexMarkSQL = `SELECT coalesce(max(id), 0) FROM messages`

// indexPendingSQL indexes the messages with text above the mark that are
// not indexed yet (the update trigger indexes a row whose body changes).
const indexPendingSQL = `INSERT INTO messages_fts (rowid, body)
	SELECT id, body FROM messages m WHERE id > ? AND body != ''
	AND NOT EXISTS (SELECT 1 FROM messages_fts_docsize d WHERE d.id = m.id)`

// beginWrite begins a write transaction the backend's way. Only the
// writer goroutine calls it (and markIndex, commitWrite).
func (s *Store) beginWrite(ctx context.Context) (*sql.Tx, error) {
	s.indexMark = -1
	s.indexTx = s.indexAtCommit.Load()
	return s.db.BeginTx(ctx, s.d.txOpts)
}

// markIndex notes, once per write transaction, the id above which the
// messages it inserts lie (SQLite; a no-op on PostgreSQL). Call it before
// inserting messages in tx.
func (s *Store) markIndex(ctx context.Context, tx *sql.Tx) error {
	if !s.indexTx || s.indexMark >= 0 {
		return nil
	}
	return s.queryRow(ctx, tx, indexMarkSQL).Scan(&s.indexMark)
}

// markIndexFrom is markIndex for a write that has just inserted n
// messages with the transaction's first INSERT into messages, res its
// result: SQLite gave them consecutive ids after the largest one (an
// INTEGER PRIMARY KEY without AUTOINCREMENT takes max(id)+1 for each new
// row), so the mark is the last id less n, and no read is needed.
func (s *Store) markIndexFrom(res sql.Result, n int) error {
	if !s.indexTx || s.indexMark >= 0 {
		return nil
	}
	last, err := res.LastInsertId()
	if err != nil {
		return err
	}
	s.indexMark = last - int64(n)
	return nil
}

// commitWrite indexes the messages the transaction inserted (SQLite) and
// commits it.
func (s *Store) commitWrite(tx *sql.Tx) error {
	if s.indexTx && s.indexMark >= 0 {
		if _, err := s.exec(context.Background(), tx, indexPendingSQL, s.indexMark); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}
