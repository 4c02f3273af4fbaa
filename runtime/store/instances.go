package store

import (
	"context"
	"database/sql"
)

// Instance is a server process registered in the database.
type Instance struct {
	ID          string
	PID         int
	Host        string
	StartedAt   int64
	HeartbeatAt int64
}

// RegisterInstance records this process.
func (s *Store) RegisterInstance(ctx context.Context, in Instance) error {
	now := s.nowMS()
	return s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO instances (id, pid, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`, in.ID, in.PID, in.Host, now, now)
		return err
	})
}

// Heartbeat refreshes this instance and the runs it owns.
func (s *Store) Heartbeat(ctx context.Context, instance string) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		// The time the write runs, not the time it was asked for: under
		// load a write waits in the writer's queue and its batch may be
		// retried for seconds, and a heartbeat that old when it commits
		// made a live process look dead to the others (its running runs
		// then marked unknown).
		now := s.nowMS()
		if _, err := s.exec(ctx, tx, "UPDATE instances SET heartbeat_at = ? WHERE id = ?", now, instance); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, heartbeatRuns, now, instance)
		return err
	})
}

// UnregisterInstance removes this process's row (clean shutdown).
func (s *Store) UnregisterInstance(ctx context.Context, instance string) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, "DELETE FROM instances WHERE id = ?", instance)
		return err
	})
}

// AdoptRun moves a queued run of a dead instance to this one (it never
// started, so running it here executes it once). It returns false when
// someone else adopted, claimed or finished it first.
func (s *Store) AdoptRun(ctx context.Context, id, from, instance string, pid int) (bool, error) {
	var n int64
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE runs SET owner_instance = ?, owner_pid = ?, heartbeat_at = ? WHERE id = ? AND state = 'queued'
			AND owner_instance = ?`, instance, pid, s.nowMS(), id, from)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n == 1, err
}

// Instances lists the registered server processes.
func (s *Store) Instances(ctx context.Context) ([]Instance, error) {
	rows, err := s.readRows(ctx, "SELECT id, pid, host, started_at, heartbeat_at FROM instances")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var in Instance
		if err := rows.Scan(&in.ID, &in.PID, &in.Host, &in.StartedAt, &in.HeartbeatAt); err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// heartbeatRuns stamps an instance's running runs. Its state IN (...)
// lets the partial index of active runs serve it (0014).
const heartbeatRuns = "UPDATE runs SET heartbeat_at = ? WHERE owner_instance = ? AND state = 'running' AND state IN ('queued','running')"

// foreignActiveRuns reads the active runs of other instances (through
// the partial index of active runs).
const foreignActiveRuns = "SELECT " + runCols + " FROM runs WHERE state IN ('queued','running') AND owner_instance != ?"

// ForeignActiveRuns lists queued or running runs owned by other instances.
func (s *Store) ForeignActiveRuns(ctx context.Context, self string) ([]*Run, error) {
	rows, err := s.readRows(ctx, foreignActiveRuns, self)
	if err != nil {
		return nil, err
	}
	return scanRuns(rows)
}
