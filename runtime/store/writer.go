package store

// The single writer: every write transaction of a Store goes through one
// goroutine (writer), which groups the writes queued at the same time into
// one transaction and one commit (group commit), runs a failed batch again
// with a savepoint per write, lingers briefly for the read-only call records
// it may coalesce, and retries a batch another process kept locked.

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"time"
)

// txReq is one write queued for the writer.
type txReq struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	done chan error
	// For writes nobody waits on: committed is closed and after called
	// once the write is answered.
	committed chan struct{}
	after     func(error)
	// rec is set for a read-only call's record (appendAsync), which the
	// writer may append together with its neighbours (coalesce).
	rec *asyncRecord
}

// answer reports the write's outcome to whoever waits for it.
func (r *txReq) answer(err error) {
	r.done <- err
	if r.after != nil {
		r.after(err)
	}
	if r.committed != nil {
		close(r.committed)
	}
}

// Tx runs fn in a write transaction (BEGIN IMMEDIATE) and returns once it
// is committed. Writes queued at the same time are committed together
// (group commit); fn's error rolls back fn's writes only (a batch in which
// one write failed runs again with a savepoint per write). The transaction is retried when another process holds the
// lock past busy_timeout, so fn must be safe to run more than once.
func (s *Store) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.waitFor(&txReq{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// waitFor queues req for the writer and returns its outcome once it is
// committed (or the store closed before it ran).
func (s *Store) waitFor(req *txReq) error {
	ctx := req.ctx
	s.wstats.waited.Add(1)
	select {
	case s.writes <- req:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the write is not abandoned: waiting for its result keeps
	// "returned nil" meaning "committed". A send that raced Close may land
	// after the writer's last drain: once the writer has exited, a request
	// it did not answer never ran.
	select {
	case err := <-req.done:
		return s.fault(err)
	case <-s.exited:
		select {
		case err := <-req.done:
			return s.fault(err)
		default:
			return ErrClosed
		}
	}
}

// maxBatch bounds how many queued writes share one transaction.
const maxBatch = 128

// writer owns the write path: it takes what is queued and commits it as
// one transaction. It drains the queue before exiting on Close.
func (s *Store) writer() {
	defer s.writerWG.Done()
	defer close(s.exited)
	batch := make([]*txReq, 0, maxBatch)
	for {
		var first *txReq
		select {
		case first = <-s.writes:
		case <-s.stop:
			for {
				select {
				case r := <-s.writes:
					s.commitBatch([]*txReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		batch = s.linger(batch)
		s.commitBatch(s.coalesce(batch))
	}
}

// recordLinger is how long a batch of records nobody waits for (read-only
// calls' transcript records) waits for company before it commits: one
// commit then carries the records of the calls a client makes in sequence
// over that time (at ~0.3 ms a call, a few dozen; maxBatch bounds it). A
// write somebody waits for, a Flush (a read of the transcript) or Close
// ends the wait at once. This is the window in which a kill -9 can lose
// a read-only call's record (README, Durability); nothing else waits in it.
const recordLinger = 10 * time.Millisecond

// linger holds a batch made only of writes nobody waits for until
// recordLinger passes, a waited write arrives, a Flush nudges, the batch
// is full or the store closes, and returns the batch with whatever joined
// it.
func (s *Store) linger(batch []*txReq) []*txReq {
	for _, r := range batch {
		if r.committed == nil {
			return batch
		}
	}
	t := time.NewTimer(s.recLinger)
	defer t.Stop()
	for len(batch) < maxBatch {
		select {
		case r := <-s.writes:
			batch = append(batch, r)
			if r.committed == nil {
				return batch
			}
		case <-t.C:
			return batch
		case <-s.nudge:
			// Whoever nudged waits for a record queued before the nudge:
			// take what is queued along.
			for len(batch) < maxBatch {
				select {
				case r := <-s.writes:
					batch = append(batch, r)
				default:
					return batch
				}
			}
			return batch
		case <-s.stop:
			return batch
		}
	}
	return batch
}

// commitBatch runs a batch in one transaction, retrying it while another
// process holds the database locked, and answers every request.
func (s *Store) commitBatch(batch []*txReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.answer(err)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	var errs []error
	var err error
	for attempt := 0; ; attempt++ {
		errs, err = s.runBatch(live)
		if err == nil || !s.d.retryable(err) || s.retryOver(attempt) {
			break
		}
		d := s.retryWait(attempt)
		s.log.Debug("store busy, retrying", "attempt", attempt+1, "wait", d)
		time.Sleep(d)
	}
	if err == nil {
		s.wstats.commits.Add(1)
		s.committedFrames()
	}
	if err != nil && s.d.retryable(err) {
		err = fmt.Errorf("store: database stayed locked by another process (or, on PostgreSQL, its transactions kept conflicting): %w", err)
	} else if err != nil && len(live) > 1 {
		// A failure of the shared transaction (say, one caller's context was
		// cancelled mid-statement, which makes SQLite roll everything back)
		// must not fail the others: run each alone.
		for _, r := range live {
			s.commitBatch([]*txReq{r})
		}
		return
	}
	if err == nil && s.d == postgresDialect {
		// After the commit, never inside it: a watcher that sees the
		// counter move must find the change committed (dashboard.go).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, cerr := s.db.ExecContext(ctx, "SELECT nextval('changes')")
		cancel()
		if cerr != nil {
			s.log.Debug("store: advance the change counter", "err", cerr)
		}
	}
	for i, r := range live {
		if err != nil {
			r.answer(err)
		} else {
			r.answer(errs[i])
		}
	}
}

// retryOver reports that a batch failed with a retryable error attempt+1
// times and is not tried again: SQLite's attempts each waited up to
// busy_timeout for the lock already; PostgreSQL's serialization failures
// come at once, so more (shorter) attempts are made.
func (s *Store) retryOver(attempt int) bool {
	if s.d == sqliteDialect {
		return attempt >= 7
	}
	return attempt >= 40
}

// retryWait is the pause before attempt+2: exponential from 10 ms (capped
// at 320 ms on PostgreSQL) with jitter, so conflicting writers spread out.
func (s *Store) retryWait(attempt int) time.Duration {
	shift := attempt
	if s.d != sqliteDialect {
		shift = min(attempt, 5)
	}
	return time.Duration(10<<shift)*time.Millisecond + time.Duration(rand.IntN(20))*time.Millisecond
}

// call runs one write closure, turning a panic into that write's error so
// the writer (and the server) keeps going.
func call(fn func(tx *sql.Tx) error, tx *sql.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: write panicked: %v", p)
		}
	}()
	return fn(tx)
}

// runBatch executes the requests in one transaction and commits (each in
// a savepoint of its own when one of them fails). errs holds each request's own error; err is a transaction-level
// failure (begin or commit), which fails the whole batch.
func (s *Store) runBatch(batch []*txReq) (errs []error, err error) {
	bg := context.Background()
	tx, err := s.beginWrite(bg)
	if err != nil {
		return nil, err
	}
	errs = make([]error, len(batch))
	if len(batch) == 1 {
		// A write alone needs no savepoint: its transaction is its boundary.
		r := batch[0]
		if cerr := r.ctx.Err(); cerr != nil {
			_ = tx.Rollback()
			return []error{cerr}, nil
		}
		if ferr := call(r.fn, tx); ferr != nil {
			_ = tx.Rollback()
			if s.d.retryable(ferr) {
				return nil, ferr
			}
			return []error{ferr}, nil
		}
		if err := s.commitWrite(tx); err != nil {
			return nil, err
		}
		return errs, nil
	}
	// Optimistically, without savepoints: a write that fails is rare, and
	// a savepoint per write costs three statements, a statement journal
	// and an FTS5 flush of pending index data. When one fails the whole
	// transaction is rolled back and the batch runs again with a savepoint
	// per write (fn is safe to run more than once), so its failure still
	// rolls back its own writes only.
	plain := true
	for i, r := range batch {
		if cerr := r.ctx.Err(); cerr != nil {
			errs[i] = cerr // cancelled while queued: do nothing for it
			continue
		}
		if ferr := call(r.fn, tx); ferr != nil {
			_ = tx.Rollback()
			if s.d.retryable(ferr) {
				return nil, ferr
			}
			plain = false
			break
		}
	}
	if plain {
		if err := s.commitWrite(tx); err != nil {
			return nil, err
		}
		return errs, nil
	}
	if tx, err = s.beginWrite(bg); err != nil {
		return nil, err
	}
	errs = make([]error, len(batch))
	for i, r := range batch {
		if cerr := r.ctx.Err(); cerr != nil {
			errs[i] = cerr // cancelled while queued: do nothing for it
			continue
		}
		if _, err := s.exec(bg, tx, "SAVEPOINT w"); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
		if ferr := call(r.fn, tx); ferr != nil {
			if s.d.retryable(ferr) {
				_ = tx.Rollback()
				return nil, ferr
			}
			errs[i] = ferr
			if _, err := s.exec(bg, tx, "ROLLBACK TO w"); err != nil {
				_ = tx.Rollback()
				return nil, err
			}
		}
		if _, err := s.exec(bg, tx, "RELEASE w"); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
	}
	if err := s.commitWrite(tx); err != nil {
		return nil, err
	}
	return errs, nil
}

// maxStmts bounds the statement cache: queries built with a variable
// number of IN values could otherwise grow it without end. Past the bound
// a query is prepared for that one use.
const maxStmts = 512
