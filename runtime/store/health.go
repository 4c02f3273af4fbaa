package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrCorrupt is wrapped by every error caused by a damaged database file
// (SQLITE_CORRUPT or SQLITE_NOTADB).
var ErrCorrupt = errors.New("the database file is damaged")

// ErrReadOnly is wrapped by every error caused by a database that cannot
// be written (SQLITE_READONLY, or a file or directory without write
// permission).
var ErrReadOnly = errors.New("the database cannot be written")

// dsn turns the configured database path into the driver's DSN. A path is
// a file name, never DSN syntax: it is made absolute and percent-escaped,
// so '#', '?' and '%' are parts of the name. Only a path written as a
// "file:" URI is taken as a URI (SQLite's own parameters such as mode=ro
// then apply); sessionplane's parameters are appended to it.
func dsn(path string, params url.Values) (string, error) {
	if strings.HasPrefix(path, "file:") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return path + sep + params.Encode(), nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("store: database path %q: %w", path, err)
	}
	return "file:" + escapePath(abs) + "?" + params.Encode(), nil
}

// escapePath percent-escapes what SQLite's URI parser would otherwise
// interpret in a file name.
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%', '?', '#', '&', '=':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// prepareFile creates the database's directory (0700) and file (0600)
// when missing and checks that both can be written, so a read-only file
// or directory is reported by name with its fix before SQLite is asked.
// A "file:" URI is left to SQLite. With template, a new file is a copy
// of the migrated template (template.go).
func prepareFile(path string, template bool) error {
	if strings.HasPrefix(path, "file:") {
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: create directory %s for the database: %w (choose another path with --db or [store] path)", dir, err)
	}
	if template && createFromTemplate(path) {
		return nil // written in dir, so both are writable
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || isROFS(err) {
			return fmt.Errorf("store: %s: %w: %v (make it writable, e.g. chmod u+w %s, or choose another path with --db)", path, ErrReadOnly, err, path)
		}
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	f.Close()
	// SQLite creates the -wal and -shm files beside the database.
	probe, err := os.CreateTemp(dir, ".sessionplane-probe-*")
	if err != nil {
		return fmt.Errorf("store: directory %s: %w: %v (SQLite writes its -wal and -shm files there: make the directory writable or choose another path with --db)", dir, ErrReadOnly, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

func isROFS(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "read-only file system")
}

// sqliteCode is the primary SQLite result code of err (0 when none).
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// Fault is fault for callers outside the store that read through DB():
// an error from a damaged or read-only file comes back naming the file and
// the fix (and damage is logged); any other error is returned unchanged.
func (s *Store) Fault(err error) error {
	if s == nil {
		return err
	}
	return s.fault(err)
}

// fault turns an error from SQLite into one that names the file and the
// fix when the file is damaged or read-only, and logs damage loudly (at
// most once a minute, with the file and what to do). Other errors pass
// through unchanged.
func (s *Store) fault(err error) error {
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrReadOnly) || errors.Is(err, ErrUnreachable) {
		return err
	}
	if s.d == postgresDialect {
		if e := s.pgFault(err); e != nil {
			return e
		}
		return err
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		s.logCorrupt(err)
		return fmt.Errorf("%w: %s: %v (run `sessionplane db check --db %s`; restore a backup or recover the file with sqlite3's .recover)", ErrCorrupt, s.path, err, s.path)
	case sqlite3.SQLITE_READONLY:
		return fmt.Errorf("%w: %s: %v (make the file and its directory writable, or choose another path with --db)", ErrReadOnly, s.path, err)
	}
	return err
}

func (s *Store) logCorrupt(err error) {
	now := time.Now().UnixMilli()
	last := s.corruptLogged.Load()
	if now-last < 60_000 || !s.corruptLogged.CompareAndSwap(last, now) {
		return
	}
	s.log.Error("DATABASE DAMAGED: a statement failed on a corrupt page; calls that need it fail, the rest is still served",
		"db", s.path, "err", err,
		"fix", "stop the servers, run `sessionplane db check --db "+s.path+"`, then restore a backup (`sessionplane db backup --to FILE` makes one) or recover with sqlite3 .recover")
}

// CheckResult is what an integrity check found.
type CheckResult struct {
	OK       bool
	Problems []string // SQLite's integrity_check lines (at most 100)
}

// Check runs SQLite's full integrity check on the database file at path
// without changing it (no migration, no file created). A file that is not
// a database at all is reported as damaged, not as an error.
func Check(ctx context.Context, path string) (*CheckResult, error) {
	if IsPostgresURL(path) {
		return nil, fmt.Errorf("store: %s is a PostgreSQL database: db check works on SQLite files (check PostgreSQL with pg_amcheck)", redactURL(path))
	}
	if !strings.HasPrefix(path, "file:") {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store: %s: %w (give the database with --db or [store] path)", path, err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	d, err := dsn(path, q)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", d)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check(100)")
	if err != nil {
		if c := sqliteCode(err); c == sqlite3.SQLITE_CORRUPT || c == sqlite3.SQLITE_NOTADB {
			return &CheckResult{Problems: []string{err.Error()}}, nil
		}
		return nil, fmt.Errorf("store: check %s: %w", path, err)
	}
	defer rows.Close()
	res := &CheckResult{}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		res.Problems = append(res.Problems, line)
	}
	if err := rows.Err(); err != nil {
		if c := sqliteCode(err); c == sqlite3.SQLITE_CORRUPT || c == sqlite3.SQLITE_NOTADB {
			res.Problems = append(res.Problems, err.Error())
			return res, nil
		}
		return nil, err
	}
	if len(res.Problems) == 1 && res.Problems[0] == "ok" {
		res.OK, res.Problems = true, nil
	}
	return res, nil
}

// Backup writes a consistent copy of the database at path to the new file
// to (created 0600; it must not exist or be empty) with VACUUM INTO, which
// reads one snapshot while other processes go on writing, then checks the
// copy's integrity.
func Backup(ctx context.Context, path, to string) (*CheckResult, error) {
	if IsPostgresURL(path) {
		return nil, fmt.Errorf("store: %s is a PostgreSQL database: db backup copies SQLite files (back PostgreSQL up with pg_dump)", redactURL(path))
	}
	if !strings.HasPrefix(path, "file:") {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store: %s: %w (give the database with --db or [store] path)", path, err)
		}
	}
	absTo, err := filepath.Abs(to)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(absTo); err == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("store: backup target %s already exists: choose a new file (a backup never overwrites one)", to)
	}
	f, err := os.OpenFile(absTo, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: create backup file %s: %w", to, err)
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	d, err := dsn(path, q)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", d)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", absTo); err != nil {
		os.Remove(absTo)
		if c := sqliteCode(err); c == sqlite3.SQLITE_CORRUPT || c == sqlite3.SQLITE_NOTADB {
			return nil, fmt.Errorf("store: back up %s: %w: %v (run `sessionplane db check`)", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("store: back up %s to %s: %w", path, to, err)
	}
	return Check(ctx, absTo)
}
