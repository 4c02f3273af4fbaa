package store

import (
	"context"
	"database/sql"
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

// autoCheckpointFrames is SQLite's own auto-checkpoint threshold on this
// store's connections: a fallback, and what restarts the log. The
// checkpointer copies the log back as it grows, but a log restarts from its
// beginning only when a write begins with all of it copied back, which a
// steady stream of commits rarely allows while a checkpoint runs beside
// them: the commit that crosses this threshold then copies the few frames
// not yet copied and the next write restarts the log. 4,000 pages of 4 KiB
// stay below walLimit, so the heartbeat's truncation (which makes writers
// wait) is not needed for it.
const autoCheckpointFrames = 4000

// checkpointGap and checkpointMaxGap bound the time between two of the
// checkpointer's checkpoints. Within them the gap doubles while a
// checkpoint finds fewer than checkpointFrames/2 new frames and halves
// while it finds more than twice as many: each checkpoint syncs the log
// and the file, so it should carry about as many frames as SQLite's own
// did (1,000), and a quiet server checkpoints at most once a second.
const (
	checkpointGap    = 100 * time.Millisecond
	checkpointMaxGap = time.Second
	checkpointFrames = 1000
)

// checkpointTimeout bounds one background checkpoint (a passive one
// never waits for a lock; this bounds the I/O).
const checkpointTimeout = 30 * time.Second

// committedFrames tells the checkpointer the writer committed (SQLite).
// It never blocks the writer.
func (s *Store) committedFrames() {
	if s.ckptNudge == nil {
		return
	}
	select {
	case s.ckptNudge <- struct{}{}:
	default:
	}
}

// checkpointer copies the WAL back into the database file after commits,
// at most once per ckptGap (paced up to checkpointMaxGap by the frames each
// checkpoint found), with a passive checkpoint on a connection it holds.
//
// SQLite's auto-checkpoint runs inside the commit that crosses its
// threshold, so every 1,000 frames (about 40 spawns committed one at a
// time) one caller's commit also synced the log, copied it and synced the
// file: 10-15 ms on that caller's path, a third of all commit time in the
// one-spawn-at-a-time fan-out. Here that work runs beside the writer: a
// passive checkpoint takes no lock a writer or reader waits for, and it
// copies only frames no reader still needs. It stops with the writer
// (Close).
func (s *Store) checkpointer() {
	defer s.ckptWG.Done()
	gap := time.NewTimer(0)
	defer gap.Stop()
	wait := s.ckptGap
	var last int64 // frames in the log at the last checkpoint
	var conn *sql.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		select {
		case <-s.ckptNudge:
		case <-s.exited:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
		var err error
		if conn == nil {
			// A connection of its own, held: borrowing one from the pool
			// would often take the one the writer just committed on, the
			// only one whose page cache and mapping that commit left valid,
			// and send the next search to a cold one (21 ms instead of 4 ms
			// at 1M messages).
			conn, err = s.db.Conn(ctx)
		}
		var busy, frames, done int64
		if err == nil {
			err = conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
		}
		cancel()
		if err != nil {
			s.log.Debug("store: background checkpoint", "err", err)
			// Busy: another process's checkpoint runs; this connection is
			// fine. Anything else: take another one next time.
			if conn != nil && !isSQLiteBusy(err) {
				conn.Close()
				conn = nil
			}
		} else {
			grown := frames - last
			if frames < last { // the log restarted meanwhile
				grown = frames
			}
			last = frames
			switch {
			case grown < checkpointFrames/2:
				wait = min(2*wait, max(checkpointMaxGap, s.ckptGap))
			case grown > 2*checkpointFrames:
				wait = max(wait/2, s.ckptGap)
			}
			s.wstats.checkpoints.Add(1)
			if s.ckptSeen != nil {
				select {
				case s.ckptSeen <- checkpointResult{Busy: busy != 0, Log: frames, Copied: done}:
				default:
				}
			}
		}
		gap.Reset(wait)
		select {
		case <-gap.C:
		case <-s.exited:
			return
		}
	}
}

// checkpointResult is what one passive checkpoint reported: whether it
// could not finish, the frames in the log and how many are copied back.
type checkpointResult struct {
	Busy        bool
	Log, Copied int64
}
