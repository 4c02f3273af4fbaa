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
