package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrExists is returned when a session to create already exists.
var ErrExists = errors.New("already exists")

// ForkSession creates dst as a fork of dst.ForkedFrom: a new session whose
// transcript is a copy of the source's messages with seq ≤ dst.ForkedAtSeq
// (0 = all of them), row for row (role, content, indexed text, trust,
// tokens, created_at: byte-identical), recorded as forked from it. The
// copy and the new session are one transaction. It fails with ErrNotFound
// when the source does not exist, ErrExists when dst does, and an error
// naming the range when ForkedAtSeq is past the source's last message.
func (s *Store) ForkSession(ctx context.Context, dst Session) (*Session, error) {
	if dst.Key == "" || dst.ForkedFrom == "" {
		return nil, errors.New("store: fork: the new key and the source key are required")
	}
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		var last int64
		err := s.queryRow(ctx, tx, `SELECT message_count FROM sessions WHERE key = ?`, dst.ForkedFrom).Scan(&last)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("session %q: %w", dst.ForkedFrom, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if dst.ForkedAtSeq == 0 {
			dst.ForkedAtSeq = last
		}
		if dst.ForkedAtSeq > last {
			return fmt.Errorf("at_seq %d is past the last message of %s (seq %d): use 1..%d, or omit it to copy everything", dst.ForkedAtSeq, dst.ForkedFrom, last, last)
		}
		var n int
		if err := s.queryRow(ctx, tx, `SELECT count(*) FROM sessions WHERE key = ?`, dst.Key).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("session %q: %w", dst.Key, ErrExists)
		}
		return s.ensureSessionTx(ctx, tx, &dst, s.nowMS())
	})
	if err != nil {
		return nil, fmt.Errorf("store: fork %s: %w", dst.ForkedFrom, err)
	}
	return s.GetSession(ctx, dst.Key)
}

// copyTranscriptTx copies src's messages with seq ≤ atSeq into the new,
// empty session dst with the same seqs, sets dst's message count to the
// copy's length and records the fork. Token counters and cost of dst stay
// zero: the fork spent nothing.
func (s *Store) copyTranscriptTx(ctx context.Context, tx *sql.Tx, src, dst string, atSeq int64) error {
	if err := s.markIndex(ctx, tx); err != nil {
		return err
	}
	if _, err := s.exec(ctx, tx, s.d.copyMessages, dst, src, atSeq); err != nil {
		return err
	}
	_, err := s.exec(ctx, tx, `UPDATE sessions SET message_count = (SELECT COALESCE(max(seq), 0) FROM messages WHERE session_key = ?),
		forked_from = ?, forked_at_seq = ? WHERE key = ?`, dst, src, atSeq, dst)
	return err
}
