package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// openPostgres opens the PostgreSQL database at url through pgx's
// database/sql driver, so every Store method and the group-commit writer
// are the same code on both backends.
func openPostgres(ctx context.Context, url string, opts *Options, log *slog.Logger, now func() time.Time, busy time.Duration) (*Store, error) {
	red := redactURL(url)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: PostgreSQL URL %s: %v (write it as postgres://user:password@host:port/database?sslmode=disable)", red, err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = busy
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "sessionplane"
	}
	db := sql.OpenDB(rebindConnector{inner: stdlib.GetConnector(*cfg)})
	// Each process keeps a modest pool: many processes (hosts) share one
	// server's max_connections.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, d: postgresDialect, path: red, log: log, now: now, writes: make(chan *txReq, 256), stop: make(chan struct{}), exited: make(chan struct{}),
		limits: opts.Limits.effective()}
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		db.Close()
		return nil, s.fault(err)
	}
	if !schema.Valid || schema.String == "" {
		db.Close()
		return nil, fmt.Errorf("store: %s: no schema to create tables in (the search_path names none that exists): create it, or set search_path in the URL", red)
	}
	s.channel = notifyChannel(schema.String)
	// The listener's first LISTEN is in place before Open returns, so no
	// notification committed after Open is missed.
	conn, err := s.listenConn(ctx, cfg)
	if err != nil {
		db.Close()
		return nil, s.fault(err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.listenCancel = cancel
	s.listenWG.Add(1)
	go s.listen(lctx, cfg, conn)
	return s.start(ctx)
}

// ErrUnreachable is wrapped by the error of a PostgreSQL database that
// cannot be reached or logged into.
var ErrUnreachable = errors.New("the PostgreSQL server cannot be reached")

// pgFault names the URL (without its password) and what to check for an
// error that means the server cannot be used; nil when err is none of those.
func (s *Store) pgFault(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil // the caller gave up: not the server's fault
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	// A server error inside a connection error (bad login, missing
	// database) is named by its code first: its fix is more precise.
	switch code := pgCode(err); {
	case code == "28P01" || code == "28000":
		return fmt.Errorf("store: %w: %s: %v (check the user and password in --db or [store] url, and the server's pg_hba.conf)", ErrUnreachable, s.path, err)
	case code == "3D000":
		return fmt.Errorf("store: %w: %s: %v (create the database, e.g. createdb, or name an existing one in the URL)", ErrUnreachable, s.path, err)
	case code == "25006":
		return fmt.Errorf("%w: %s: %v (the server is read-only, e.g. a standby: point --db at the primary)", ErrReadOnly, s.path, err)
	case code == "42501":
		return fmt.Errorf("%w: %s: %v (grant the user CREATE and USAGE on the schema, and rights on sessionplane's tables)", ErrReadOnly, s.path, err)
	case errors.As(err, &ce) || (errors.As(err, &ne) && code == ""):
		return fmt.Errorf("store: %w: %s: %v (check that the server runs and accepts connections from this host, and the host, port, user, password, database and sslmode in --db or [store] url)",
			ErrUnreachable, s.path, err)
	}
	return nil
}

// rebindConnector hands database/sql connections that accept `?`
// placeholders on PostgreSQL: every SQL text is rebound (rebindDollar)
// before pgx sees it, so SQL written once for both backends also works
// through DB() and in write closures that use the *sql.Tx directly. The
// statement cache rebinds its SQL itself; a text without `?` passes as it is.
type rebindConnector struct{ inner driver.Connector }

func (c rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &rebindConn{Conn: conn.(*stdlib.Conn)}, nil
}

func (c rebindConnector) Driver() driver.Driver { return c.inner.Driver() }

type rebindConn struct{ *stdlib.Conn }

func (c *rebindConn) Prepare(q string) (driver.Stmt, error) { return c.Conn.Prepare(rebindDollar(q)) }

func (c *rebindConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebindDollar(q))
}

// CheckNamedValue stores what PostgreSQL's text type cannot hold: a string
// with a NUL character (U+0000), which SQLite stores and PostgreSQL
// refuses (SQLSTATE 22021) whatever the column, gets each NUL replaced by
// U+FFFD. database/sql asks the connection for every argument, prepared
// statements included, so no write fails on it (docs/SPEC.md §9).
func (c *rebindConn) CheckNamedValue(nv *driver.NamedValue) error {
	switch v := nv.Value.(type) {
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			nv.Value = strings.ReplaceAll(v, "\x00", "\uFFFD")
		}
	case []byte:
		// bytea keeps NUL; nothing to do.
	}
	return c.Conn.CheckNamedValue(nv)
}

func (c *rebindConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, rebindDollar(q), args)
}

func (c *rebindConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, rebindDollar(q), args)
}
