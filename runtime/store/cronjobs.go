package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// CronJob is one row of cron_jobs. The store keeps the schedule and the
// payload as the scheduler (runtime/cron) wrote them; it interprets only
// the times.
type CronJob struct {
	ID         string
	Name       string
	Schedule   string // as written: a 5-field cron expression, every:<dur> or at:<RFC3339>
	Timezone   string // IANA name the cron expression is read in
	Payload    string // JSON of the agentTurn payload
	CreatorKey string // the session that added the job (gets its announces)
	Enabled    bool
	NextRunAt  int64 // ms; 0 = none (a fired one-shot)
	LastRunAt  int64 // ms; 0 = never
	LastRunID  string
	LastNote   string // why the last occurrence started no run, if it did not
	RunCount   int
	CreatedAt  int64
	UpdatedAt  int64
}

const cronCols = `id, name, schedule, timezone, payload, creator_key, enabled, COALESCE(next_run_at, 0), COALESCE(last_run_at, 0),
	last_run_id, last_note, run_count, created_at, updated_at`

func scanCronJob(row interface{ Scan(...any) error }) (*CronJob, error) {
	var j CronJob
	var enabled int
	if err := row.Scan(&j.ID, &j.Name, &j.Schedule, &j.Timezone, &j.Payload, &j.CreatorKey, &enabled, &j.NextRunAt, &j.LastRunAt,
		&j.LastRunID, &j.LastNote, &j.RunCount, &j.CreatedAt, &j.UpdatedAt); err != nil {
		return nil, err
	}
	j.Enabled = enabled == 1
	return &j, nil
}

func nullMS(ms int64) any {
	if ms == 0 {
		return nil
	}
	return ms
}

// InsertCronJob records a new job. CreatedAt and UpdatedAt are filled in.
func (s *Store) InsertCronJob(ctx context.Context, j *CronJob) error {
	enabled := 0
	if j.Enabled {
		enabled = 1
	}
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		now := s.nowMS()
		j.CreatedAt, j.UpdatedAt = now, now
		_, err := s.exec(ctx, tx, `INSERT INTO cron_jobs (id, name, schedule, timezone, payload, creator_key, enabled, next_run_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, j.Name, j.Schedule, j.Timezone, j.Payload, j.CreatorKey, enabled, nullMS(j.NextRunAt), now, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: insert cron job %q: %w", j.ID, err)
	}
	return nil
}

// GetCronJob returns a job, or ErrNotFound.
func (s *Store) GetCronJob(ctx context.Context, id string) (*CronJob, error) {
	j, err := scanCronJob(s.readRow(ctx, "SELECT "+cronCols+" FROM cron_jobs WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("cron job %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get cron job %q: %w", id, err)
	}
	return j, nil
}

// ListCronJobs returns the jobs creator added ("" = every job), oldest first.
func (s *Store) ListCronJobs(ctx context.Context, creator string) ([]*CronJob, error) {
	q := "SELECT " + cronCols + " FROM cron_jobs"
	var args []any
	if creator != "" {
		q += " WHERE creator_key = ?"
		args = append(args, creator)
	}
	return s.cronJobs(ctx, q+" ORDER BY created_at, id", args...)
}

// DueCronJobs returns up to limit enabled jobs whose next run is at or
// before nowMS, the most overdue first.
func (s *Store) DueCronJobs(ctx context.Context, nowMS int64, limit int) ([]*CronJob, error) {
	return s.cronJobs(ctx, "SELECT "+cronCols+` FROM cron_jobs WHERE enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= ?
		ORDER BY next_run_at, id LIMIT ?`, nowMS, limit)
}

func (s *Store) cronJobs(ctx context.Context, q string, args ...any) ([]*CronJob, error) {
	rows, err := s.readRows(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: cron jobs: %w", err)
	}
	defer rows.Close()
	var out []*CronJob
	for rows.Next() {
		j, err := scanCronJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// DeleteCronJob removes a job. It returns false when there was none.
func (s *Store) DeleteCronJob(ctx context.Context, id string) (bool, error) {
	var n int64
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, "DELETE FROM cron_jobs WHERE id = ?", id)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: delete cron job %q: %w", id, err)
	}
	return n == 1, nil
}

// activeCronRun returns the job's last run id when that run is still queued or
// running ("" otherwise).
func (s *Store) activeCronRun(ctx context.Context, tx *sql.Tx, id string) (string, error) {
	var runID string
	err := s.queryRow(ctx, tx, `SELECT r.id FROM cron_jobs j JOIN runs r ON r.id = j.last_run_id
		WHERE j.id = ? AND r.state IN ('queued', 'running')`, id).Scan(&runID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return runID, err
}

// ClaimCronOccurrence claims the occurrence of job id that was due at
// dueMS, with a compare-and-set on next_run_at: it moves next_run_at to
// nextMS (0 = none, and the job is disabled: a fired one-shot) and sets
// last_run_at to firedMS only if next_run_at still equals dueMS. Of
// several processes (or schedulers) trying the same occurrence exactly one
// gets claimed = true. active is the job's previous run when it is still
// queued or running; the occurrence is claimed all the same (so it is not
// tried again) and the caller should skip it.
func (s *Store) ClaimCronOccurrence(ctx context.Context, id string, dueMS, nextMS, firedMS int64) (claimed bool, active string, err error) {
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		claimed, active = false, ""
		enabled := 1
		if nextMS == 0 {
			enabled = 0
		}
		res, err := s.exec(ctx, tx, `UPDATE cron_jobs SET next_run_at = ?, last_run_at = ?, enabled = ?, updated_at = ?
			WHERE id = ? AND enabled = 1 AND next_run_at = ?`, nullMS(nextMS), firedMS, enabled, s.nowMS(), id, dueMS)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n != 1 {
			return err
		}
		claimed = true
		active, err = s.activeCronRun(ctx, tx, id)
		return err
	})
	if err != nil {
		return false, "", fmt.Errorf("store: claim cron occurrence of %q: %w", id, err)
	}
	return claimed, active, nil
}

// StartCronRun marks job id as fired at firedMS out of schedule (its next
// scheduled run is unchanged). It returns the previous run instead, without
// marking anything, when that run is still queued or running; ErrNotFound
// when there is no such job.
func (s *Store) StartCronRun(ctx context.Context, id string, firedMS int64) (active string, err error) {
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		if active, err = s.activeCronRun(ctx, tx, id); err != nil || active != "" {
			return err
		}
		res, err := s.exec(ctx, tx, `UPDATE cron_jobs SET last_run_at = ?, updated_at = ? WHERE id = ?`, firedMS, s.nowMS(), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("cron job %q: %w", id, ErrNotFound)
		}
		return nil
	})
	return active, err
}

// RecordCronRun records the outcome of firing job id: the run it started
// (runID, counted) or, with runID "", why it started none (note).
func (s *Store) RecordCronRun(ctx context.Context, id, runID, note string) error {
	count := 0
	if runID != "" {
		count = 1
	}
	return s.Tx(ctx, func(tx *sql.Tx) error {
		q := `UPDATE cron_jobs SET last_note = ?, run_count = run_count + ?, updated_at = ?`
		args := []any{note, count, s.nowMS()}
		if runID != "" {
			q += ", last_run_id = ?"
			args = append(args, runID)
		}
		_, err := s.exec(ctx, tx, q+" WHERE id = ?", append(args, id)...)
		return err
	})
}
