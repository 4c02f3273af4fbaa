package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the embedded migrations of one backend (its folder
// under migrations/), by version. Both backends number their migrations
// alike: version N is the same change written for each.
func loadMigrations(dir string) ([]migration, error) {
	entries, err := migrationFS.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("store: migration %s: name must start with a number", name)
		}
		b, err := migrationFS.ReadFile(dir + "/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrate applies every embedded migration newer than the recorded schema
// version. A database that has them all (every start but the first) is
// checked with one read and no write transaction. Otherwise the pending
// migrations are applied in one write transaction that checks each again
// inside it, so two processes (hosts) opening a new database at once apply
// each migration exactly once, and a migration that fails leaves the
// database as it was (none of the batch applied).
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations(s.d.migrations)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		return nil
	}
	if s.appliedAll(ctx, ms) {
		s.schema = ms[len(ms)-1].version
		return nil
	}
	if s.d == postgresDialect {
		return s.migratePostgres(ctx, ms)
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil && !isSQLiteBusy(err) {
		return fmt.Errorf("store: create schema_migrations: %w", err)
	}
	var applied []migration
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		applied = applied[:0] // the batch may run again
		have, err := appliedVersions(ctx, tx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if have[m.version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", m.version, m.name, s.nowMS()); err != nil {
				return fmt.Errorf("record %s: %w", m.name, err)
			}
			applied = append(applied, m)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: migrate %s: %w", s.path, err)
	}
	for _, m := range applied {
		s.log.Info("store migration applied", "version", m.version, "name", m.name)
	}
	s.schema = ms[len(ms)-1].version
	return nil
}

// appliedAll reports whether every migration of ms is recorded, by one
// read. Any error (no schema_migrations table yet, a busy file) answers
// false: the caller then takes the write path, which checks again.
func (s *Store) appliedAll(ctx context.Context, ms []migration) bool {
	rows, err := s.db.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return false
	}
	have, err := scanVersions(rows)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if !have[m.version] {
			return false
		}
	}
	return true
}

// appliedVersions reads the recorded migrations inside tx.
func appliedVersions(ctx context.Context, tx *sql.Tx) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	return scanVersions(rows)
}

func scanVersions(rows *sql.Rows) (map[int]bool, error) {
	defer rows.Close()
	have := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		have[v] = true
	}
	return have, rows.Err()
}

// migratePostgres applies the migrations holding a session advisory lock
// keyed by the schema: a second process (host) opening the same new
// database waits for the first, then finds every migration recorded. The
// lock is taken before any transaction begins, so each migration's
// transaction sees what the previous holder committed.
func (s *Store) migratePostgres(ctx context.Context, ms []migration) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate %s: %w", s.path, err)
	}
	defer conn.Close()
	const key = `hashtext('sessionplane migrate ' || current_schema())`
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock("+key+")"); err != nil {
		return fmt.Errorf("store: migrate %s: take the migration lock: %w", s.path, err)
	}
	defer func() {
		if _, uerr := conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock("+key+")"); uerr != nil && err == nil {
			err = fmt.Errorf("store: migrate %s: release the migration lock: %w", s.path, uerr)
		}
	}()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrate %s: create schema_migrations: %w", s.path, err)
	}
	for _, m := range ms {
		if err := s.applyPostgres(ctx, conn, m); err != nil {
			return fmt.Errorf("store: migrate %s: %w", s.path, err)
		}
		s.schema = m.version
	}
	return nil
}

func (s *Store) applyPostgres(ctx context.Context, conn *sql.Conn, m migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = $1", m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("apply %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", m.version, m.name, s.nowMS()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.log.Info("store migration applied", "version", m.version, "name", m.name)
	return nil
}
