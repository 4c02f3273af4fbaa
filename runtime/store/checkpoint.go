package store

import (
	"context"
	"fmt"
	"time"
)

// walLimit is the WAL size (bytes) past which CheckpointWAL truncates the
// log. SQLite's own auto-checkpoint (every 1,000 pages) copies the log back
// into the database, but the log restarts from its beginning only when no
// reader is using it at that moment: with several busy processes on one
// file some reader nearly always is, and the -wal file grows without bound.
const walLimit = 16 << 20

// walWait bounds how long CheckpointWAL waits for readers still using the
// log. While it waits, writers (this process's and others') wait too.
const walWait = 250 * time.Millisecond

// CheckpointWAL keeps an SQLite database's -wal file bounded: when the log
// holds more than walLimit bytes it asks for wal_checkpoint(TRUNCATE),
// which waits up to walWait for the readers still using the log, copies it
// into the database and truncates the file. It reports whether it
// truncated. Readers never wait for it; a log still in use after walWait is
// left for the next call. On PostgreSQL it does nothing. The run manager
// calls it every heartbeat.
func (s *Store) CheckpointWAL(ctx context.Context) (bool, error) {
	if s.d != sqliteDialect {
		return false, nil
	}
	return s.checkpointWAL(ctx, walLimit)
}

func (s *Store) checkpointWAL(ctx context.Context, limit int64) (bool, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	// A passive checkpoint never waits; it says how long the log is.
	var busy, frames, done int64
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
		return false, fmt.Errorf("store: wal_checkpoint(PASSIVE): %w", err)
	}
	var page int64
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&page); err != nil {
		return false, fmt.Errorf("store: page_size: %w", err)
	}
	if frames*page <= limit {
		return false, nil
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", walWait.Milliseconds())); err != nil {
		return false, err
	}
	// The connection goes back to the pool: give it back its own timeout.
	defer conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA busy_timeout = %d", s.busy.Milliseconds()))
	var tbusy, tframes, tdone int64
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&tbusy, &tframes, &tdone); err != nil {
		if isSQLiteBusy(err) {
			return false, nil
		}
		return false, fmt.Errorf("store: wal_checkpoint(TRUNCATE): %w", err)
	}
	if tbusy != 0 {
		s.log.Debug("store: WAL still in use by readers; truncating it at the next heartbeat", "bytes", frames*page)
		return false, nil
	}
	s.log.Debug("store: WAL truncated", "bytes", frames*page)
	return true, nil
}
