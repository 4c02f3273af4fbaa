package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
)

// Approval states.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalDenied   = "denied"
	ApprovalExpired  = "expired"
)

// Approval is a tool call of a background run waiting for a human.
type Approval struct {
	ID           string
	RunID        string
	Tool         string
	ArgsSummary  string
	Class        string
	CallerKey    string
	RequesterKey string
	Call         json.RawMessage // the parked call and its batch (runtime's format)
	CreatedAt    int64
	ExpiresAt    int64
	State        string
	DecidedBy    string
	Consumed     bool
}

const approvalCols = "id, run_id, tool, args_summary, class, caller_key, requester_key, call, created_at, expires_at, state, decided_by, consumed"

func scanApproval(row interface{ Scan(...any) error }) (*Approval, error) {
	var a Approval
	var call string
	if err := row.Scan(&a.ID, &a.RunID, &a.Tool, &a.ArgsSummary, &a.Class, &a.CallerKey, &a.RequesterKey, &call,
		&a.CreatedAt, &a.ExpiresAt, &a.State, &a.DecidedBy, &a.Consumed); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	a.Call = json.RawMessage(call)
	return &a, nil
}

// ParkRun ends a running run's current execution in state input_required,
// in one transaction: the run's counters so far and the timeout it has
// left are stored, its session shows input_required, and the approval is
// recorded. It returns false when the run was no longer running (killed).
func (s *Store) ParkRun(ctx context.Context, o Outcome, timeoutLeftMS int64, a *Approval) (bool, error) {
	var done bool
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		done = false
		now := s.nowMS()
		res, err := s.exec(ctx, tx, `UPDATE runs SET state = 'input_required', note = ?, iterations = ?, tool_calls = ?,
			tokens_in = ?, tokens_out = ?, cost_usd = ?, timeout_ms = ?, owner_instance = '', owner_pid = 0
			WHERE id = ? AND state = 'running'`,
			o.Note, o.Iterations, o.ToolCalls, o.TokensIn, o.TokensOut, o.CostUSD, timeoutLeftMS, a.RunID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		done = true
		// A parked run no longer holds its session: a queued turn may start.
		if err := s.Notify(ctx, tx, TopicRuns); err != nil {
			return err
		}
		if o.ModelServed != "" {
			if err := s.recordModelServedTx(ctx, tx, a.RunID, o.ModelServed); err != nil {
				return err
			}
		}
		if _, err := s.exec(ctx, tx, `UPDATE sessions SET status = 'input_required', updated_at = ? WHERE key = (SELECT child_key FROM runs WHERE id = ?)`, now, a.RunID); err != nil {
			return err
		}
		a.CreatedAt, a.State = now, ApprovalPending
		_, err = s.exec(ctx, tx, `INSERT INTO approvals (id, run_id, tool, args_summary, class, caller_key, requester_key, call, created_at, expires_at, state)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')`,
			a.ID, a.RunID, a.Tool, a.ArgsSummary, a.Class, a.CallerKey, a.RequesterKey, string(a.Call), now, a.ExpiresAt)
		return err
	})
	return done, err
}

// GetApproval returns one approval.
func (s *Store) GetApproval(ctx context.Context, id string) (*Approval, error) {
	return scanApproval(s.readRow(ctx, "SELECT "+approvalCols+" FROM approvals WHERE id = ?", id))
}

// PendingApprovals lists every pending approval, oldest first (callers
// filter by who may see them).
func (s *Store) PendingApprovals(ctx context.Context) ([]*Approval, error) {
	rows, err := s.readRows(ctx, "SELECT "+approvalCols+" FROM approvals WHERE state = 'pending' ORDER BY created_at, id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DecideApproval records a decision on a pending approval and queues its
// run again, owned by instance, in one transaction. It returns false when
// the approval was no longer pending (decided or expired meanwhile).
func (s *Store) DecideApproval(ctx context.Context, id, state, by, instance string, pid int) (bool, error) {
	var done bool
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		done = false
		now := s.nowMS()
		res, err := s.exec(ctx, tx, `UPDATE approvals SET state = ?, decided_by = ?, decided_at = ? WHERE id = ? AND state = 'pending'`, state, by, now, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		done = true
		return s.requeueParkedTx(ctx, tx, id, instance, pid, now)
	})
	return done, err
}

func (s *Store) requeueParkedTx(ctx context.Context, tx *sql.Tx, approvalID, instance string, pid int, now int64) error {
	if _, err := s.exec(ctx, tx, `UPDATE runs SET state = 'queued', owner_instance = ?, owner_pid = ?, heartbeat_at = ?
		WHERE id = (SELECT run_id FROM approvals WHERE id = ?) AND state = 'input_required'`, instance, pid, now, approvalID); err != nil {
		return err
	}
	_, err := s.exec(ctx, tx, `UPDATE sessions SET status = 'queued', updated_at = ?
		WHERE key = (SELECT child_key FROM runs WHERE id = (SELECT run_id FROM approvals WHERE id = ?)) AND status = 'input_required'`, now, approvalID)
	return err
}

// ExpireApprovals marks pending approvals past their expiry expired (a
// refusal) and queues their runs again, owned by instance. It returns the
// runs queued.
func (s *Store) ExpireApprovals(ctx context.Context, instance string, pid int) ([]string, error) {
	var runs []string
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		runs = nil
		now := s.nowMS()
		rows, err := s.txQuery(ctx, tx, `SELECT id, run_id FROM approvals WHERE state = 'pending' AND expires_at <= ?`, now)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id, run string
			if err := rows.Scan(&id, &run); err != nil {
				rows.Close()
				return err
			}
			ids, runs = append(ids, id), append(runs, run)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := s.exec(ctx, tx, `UPDATE approvals SET state = 'expired', decided_by = 'timeout ([approval] park_minutes)', decided_at = ? WHERE id = ? AND state = 'pending'`, now, id); err != nil {
				return err
			}
			if err := s.requeueParkedTx(ctx, tx, id, instance, pid, now); err != nil {
				return err
			}
		}
		return nil
	})
	return runs, err
}

// DecidedApproval returns the decided, not yet applied approval of a run
// (ErrNotFound when there is none: the run is not resuming from a park).
func (s *Store) DecidedApproval(ctx context.Context, runID string) (*Approval, error) {
	return scanApproval(s.readRow(ctx, "SELECT "+approvalCols+` FROM approvals WHERE run_id = ? AND state != 'pending' AND consumed = 0
		ORDER BY created_at DESC LIMIT 1`, runID))
}

// ConsumeApproval marks a decision applied, once: false when it already was
// (the approved call must not run twice).
func (s *Store) ConsumeApproval(ctx context.Context, id string) (bool, error) {
	var n int64
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE approvals SET consumed = 1 WHERE id = ? AND consumed = 0 AND state != 'pending'`, id)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n == 1, err
}
