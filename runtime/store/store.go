// Package store owns sessionplane's SQLite file: the schema and its embedded
// migrations, sessions, the per-session ordered transcript, the FTS5 index,
// and (filled by later layers) runs, announces, cron jobs and task lists.
//
// It lives under runtime/ because the runtime is its main writer, but it
// imports nothing of sessionplane: the read tools use it directly.
//
// Several processes may open the same file: every write transaction takes
// the lock up front (_txlock=immediate), waits up to busy_timeout, and is
// retried on SQLITE_BUSY, so "database is locked" never reaches a caller.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// ErrNotFound is returned when a session (or other row) does not exist.
var ErrNotFound = errors.New("not found")

// Options tune Open. A nil *Options takes the defaults.
type Options struct {
	Logger      *slog.Logger  // default: discard
	BusyTimeout time.Duration // default 10s
	Now         func() time.Time
	// Limits bound what one message and one search may cost; zero fields
	// take their defaults (limits.go).
	Limits Limits

	noTemplate bool // a new file is made by the migrations (TestSQLiteTemplate)
	// checkpointed, when set, gets each background checkpoint's result
	// (tests; never blocks the checkpointer).
	checkpointed chan<- checkpointResult
}

// Store is an open sessionplane database. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	// indexTx: the writer's current transaction fills the search index
	// before it commits; indexMark is the largest message id before its
	// first insert of a message (-1: none yet). See ftsindex.go; only the
	// writer goroutine uses them.
	indexTx   bool
	indexMark int64
	// indexAtCommit: write transactions fill the search index before they
	// commit (SQLite, once migration 0015 is applied).
	indexAtCommit atomic.Bool
	d             *dialect
	path          string        // the SQLite file, or the PostgreSQL URL without its password
	busy          time.Duration // how long a connection waits for a lock (SQLite busy_timeout)
	log           *slog.Logger
	now           func() time.Time
	schema        int

	// Group commit: write transactions queue here and one writer goroutine
	// runs whatever is queued in a single SQLite transaction.
	writes    chan *txReq
	stop      chan struct{}
	exited    chan struct{} // closed when the writer has stopped
	writerWG  sync.WaitGroup
	closeOnce sync.Once

	// Prepared statements by SQL text, for writes (bound to the writer's
	// transaction) and reads (run on the pool): parsing SQL was a quarter
	// of a read-only tool call. Bounded by maxStmts.
	stmtMu sync.Mutex
	stmts  sync.Map // string → *sql.Stmt
	nStmts int
	closed bool
	// deferred are statements once run unprepared rather than open a
	// connection to cache them (txStmt). Bounded by maxStmts.
	deferred map[string]struct{}

	rank   rankStats // search ranking statistics (rank.go)
	limits Limits
	work   searchWork // what searches scored (limits.go)
	// corruptLogged is when damage was last logged (unix ms), so a damaged
	// page hit by every request does not flood the log (health.go).
	corruptLogged atomic.Int64

	ann announceSignal // may a requester have announces to claim (record.go)

	// PostgreSQL wake-ups (notify.go): the channel of this database's
	// schema, the waiters per topic, and the listener goroutine.
	channel      string
	wakes        wakeBus
	listenWG     sync.WaitGroup
	listenCancel context.CancelFunc

	// recLast is, per session, the newest record handed to the writer
	// without waiting (RecordCall); Flush waits for it.
	recMu   sync.Mutex
	recLast map[string]*txReq
	// nudge ends the writer's linger at once: someone (Flush) waits for
	// the records it holds.
	nudge chan struct{}
	// ckptNudge tells the checkpointer that the writer committed (SQLite
	// only; nil on PostgreSQL). ckptGap is the least time between two of
	// its checkpoints.
	ckptNudge chan struct{}
	ckptGap   time.Duration
	ckptWG    sync.WaitGroup
	ckptSeen  chan<- checkpointResult // Options.checkpointed
	// recLinger is recordLinger (tests lengthen it to show what ends it).
	recLinger time.Duration

	wstats writeCounters // WriteStats (callrecord.go)

	// notifyQueued holds the requesters with a notification claim handed
	// to the writer and not started yet (ClaimNotificationsAsync).
	notifyQueued sync.Map // requester key → struct{}
}

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

// Open opens (creating when missing, with 0700/0600 permissions) the
// database at path and applies pending migrations. path is a file name
// (any characters); only a path starting with "file:" is read as an SQLite
// URI. A damaged or read-only file gives an error wrapping ErrCorrupt or
// ErrReadOnly that names the file and the fix.
func Open(ctx context.Context, path string, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 10 * time.Second
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if path == "" {
		return nil, errors.New("store: empty database path (set [store] path or --db)")
	}
	if IsPostgresURL(path) {
		return openPostgres(ctx, path, opts, log, now, busy)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("store: %s is a directory: name the database file inside it, e.g. %s", path, filepath.Join(path, "sessionplane.db"))
	}
	if err := prepareFile(path, !opts.noTemplate); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "temp_store(MEMORY)") // a batch's savepoint journals stay off disk
	// Checkpoints run beside the writer (checkpointer, checkpoint.go), not
	// inside the commit that crosses SQLite's 1,000 frames: this larger
	// threshold is only the fallback for when that goroutine falls behind.
	q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", autoCheckpointFrames))
	// Reads map the file (up to mmapBytes) instead of copying each page
	// with pread into every connection's own cache, which SQLite empties
	// whenever another connection has committed: searching a large store
	// spent a fifth of its CPU in pread.
	q.Add("_pragma", fmt.Sprintf("mmap_size(%d)", mmapBytes))
	q.Set("_txlock", "immediate")
	dsn, err := dsn(path, q)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// WAL lets readers run beside the one writer; the pool is sized so the
	// run lanes and concurrent tool calls do not queue for a connection.
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	s := &Store{db: db, d: sqliteDialect, path: path, busy: busy, log: log, now: now, writes: make(chan *txReq, 256), stop: make(chan struct{}), exited: make(chan struct{}),
		limits: opts.Limits.effective(), ckptSeen: opts.checkpointed}
	// Processes opening a new file at once race to switch it to WAL, and
	// SQLite answers a loser SQLITE_BUSY at once, busy_timeout or not:
	// retry (each attempt opens a fresh connection) for up to busy_timeout.
	err = s.verify(ctx)
	for deadline := time.Now().Add(busy); err != nil && isSQLiteBusy(err) && time.Now().Before(deadline); err = s.verify(ctx) {
		time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
	}
	if err != nil {
		db.Close()
		return nil, s.fault(err)
	}
	return s.start(ctx)
}

// start runs the writer and applies pending migrations.
func (s *Store) start(ctx context.Context) (*Store, error) {
	s.nudge = make(chan struct{}, 1)
	s.recLinger = recordLinger
	s.writerWG.Add(1)
	go s.writer()
	if s.d == sqliteDialect {
		s.ckptNudge = make(chan struct{}, 1)
		s.ckptGap = checkpointGap
		s.ckptWG.Add(1)
		go s.checkpointer()
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, s.fault(err)
	}
	s.indexAtCommit.Store(s.d.deferredIndex) // the schema has no insert trigger now (0015)
	return s, nil
}

func (s *Store) verify(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("store: read journal_mode of %s: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("store: %s: journal_mode is %q, want wal (is the file on a network filesystem?)", s.path, mode)
	}
	var fk int
	if err := s.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		return fmt.Errorf("store: %s: foreign_keys not enabled (%v)", s.path, err)
	}
	return nil
}

// SchemaVersion is the newest migration applied.
func (s *Store) SchemaVersion() int { return s.schema }

// Path is the database file, or for PostgreSQL its URL without the
// password.
func (s *Store) Path() string { return s.path }

// DB exposes the handle for packages that own their own tables (runs, cron, tasks).
func (s *Store) DB() *sql.DB { return s.db }

// Close stops the writer (after the writes already queued) and closes the
// database. It may be called more than once.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	var err error
	s.closeOnce.Do(func() {
		if s.listenCancel != nil {
			s.listenCancel()
			s.listenWG.Wait()
		}
		close(s.stop)
		s.writerWG.Wait()
		s.ckptWG.Wait()
		// Fold the WAL back into the main file so a clean shutdown leaves one file.
		s.stmtMu.Lock()
		s.closed = true
		s.stmts.Range(func(_, v any) bool {
			v.(*sql.Stmt).Close()
			return true
		})
		s.stmts.Clear()
		s.stmtMu.Unlock()
		if s.d == sqliteDialect {
			_, _ = s.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		}
		err = s.db.Close()
	})
	return err
}

// ErrClosed is returned for writes after Close.
var ErrClosed = errors.New("store: closed")

// NowMS is the store clock in milliseconds.
func (s *Store) NowMS() int64 { return s.nowMS() }

func (s *Store) nowMS() int64 { return s.now().UnixMilli() }

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
