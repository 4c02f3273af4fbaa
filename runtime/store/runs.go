package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Run states.
const (
	RunQueued  = "queued"
	RunRunning = "running"
	RunOK      = "ok"
	RunError   = "error"
	RunTimeout = "timeout"
	RunKilled  = "killed"
	RunUnknown = "unknown"
	RunBudget  = "budget" // stopped before a model call that would pass a spending limit
	// RunInputRequired is a run parked until a human decides one of its
	// tool calls (approvals); not terminal.
	RunInputRequired = "input_required"
)

// Terminal reports whether a run state is final.
func Terminal(state string) bool {
	switch state {
	case RunOK, RunError, RunTimeout, RunKilled, RunUnknown, RunBudget:
		return true
	}
	return false
}

// Run is one row of the run registry.
type Run struct {
	ID            string
	Kind          string // spawn | send | cron
	ChildKey      string
	RequesterKey  string
	AgentID       string
	Label         string
	Task          string
	Preset        string
	Model         string
	ModelServed   string // the model the provider said answered (last seen); "" before any answer
	Thinking      string
	Cleanup       string
	TimeoutMS     int64
	Depth         int
	Role          string
	State         string
	Note          string
	ResultText    string
	ResultJSON    json.RawMessage
	Options       json.RawMessage
	Iterations    int
	ToolCalls     int
	TokensIn      int64
	TokensOut     int64
	CostUSD       float64
	OwnerPID      int
	OwnerInstance string
	HeartbeatAt   int64
	CreatedAt     int64
	StartedAt     int64
	EndedAt       int64

	// MaxActiveSiblings, when > 0 on a new spawn run, is checked in the
	// run's own transaction: CreateRun fails with a *LimitError when the
	// requester already has that many queued or running spawns. Not stored.
	MaxActiveSiblings int
	// Record, when set on a new run, is the tool call's own transcript
	// record, written in CreateRun's transaction. Not stored as a column.
	Record *CallRecord
	// SessionLastSeq, set by a claim (ClaimRunFor, FinishRunAndClaim), is
	// the seq of the newest message of the run's session as the claim
	// left it (0: none): a waiter that knew the transcript up to that seq
	// need not read it. Not stored.
	SessionLastSeq int64
	// Transcript, set by CreateRun when it created the run's session
	// (not a fork) with the run, is that session's whole transcript as
	// committed: the messages it was created with, their seqs assigned.
	// Whoever executes the run at once may start from it instead of
	// reading it back. Not stored.
	Transcript []Message
}

// LimitError is returned when recording a run would exceed a limit that is
// checked in the same transaction as the write.
type LimitError struct {
	Requester string
	Active    int
	Limit     int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s already has %d active children (limit %d)", e.Requester, e.Active, e.Limit)
}

const runCols = `id, kind, child_key, requester_key, agent_id, label, task, preset, model, thinking, cleanup, timeout_ms, depth, role,
	state, note, result_text, COALESCE(result_json, ''), options, iterations, tool_calls, tokens_in, tokens_out, cost_usd,
	owner_pid, owner_instance, heartbeat_at, created_at, COALESCE(started_at, 0), COALESCE(ended_at, 0), model_served`

// scanRun reads a row of runCols, then the extra columns that follow
// them into extra.
func scanRun(row interface{ Scan(...any) error }, extra ...any) (*Run, error) {
	var r Run
	var resJSON, opts string
	err := row.Scan(append([]any{&r.ID, &r.Kind, &r.ChildKey, &r.RequesterKey, &r.AgentID, &r.Label, &r.Task, &r.Preset, &r.Model, &r.Thinking,
		&r.Cleanup, &r.TimeoutMS, &r.Depth, &r.Role, &r.State, &r.Note, &r.ResultText, &resJSON, &opts, &r.Iterations, &r.ToolCalls,
		&r.TokensIn, &r.TokensOut, &r.CostUSD, &r.OwnerPID, &r.OwnerInstance, &r.HeartbeatAt, &r.CreatedAt, &r.StartedAt, &r.EndedAt, &r.ModelServed},
		extra...)...)
	if err != nil {
		return nil, err
	}
	if resJSON != "" {
		r.ResultJSON = json.RawMessage(resJSON)
	}
	r.Options = json.RawMessage(opts)
	return &r, nil
}

// InsertRun records a new run (state queued unless set).
func (s *Store) InsertRun(ctx context.Context, r *Run) error {
	if r.State == "" {
		r.State = RunQueued
	}
	if r.CreatedAt == 0 {
		r.CreatedAt = s.nowMS()
	}
	if len(r.Options) == 0 {
		r.Options = json.RawMessage("{}")
	}
	return s.Tx(ctx, func(tx *sql.Tx) error { return s.insertRunTx(ctx, tx, r) })
}

func (s *Store) insertRunTx(ctx context.Context, tx *sql.Tx, r *Run) error {
	var started any // NULL until the run starts
	if r.StartedAt != 0 {
		started = r.StartedAt
	}
	args := []any{r.ID, r.Kind, r.ChildKey, r.RequesterKey, r.AgentID, r.Label, r.Task, r.Preset, r.Model, r.Thinking,
		r.Cleanup, r.TimeoutMS, r.Depth, r.Role, r.State, string(r.Options), r.OwnerPID, r.OwnerInstance, r.CreatedAt, r.CreatedAt, started}
	if r.MaxActiveSiblings <= 0 {
		_, err := s.exec(ctx, tx, `INSERT INTO runs (`+insertRunCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
		return err
	}
	// The limit is read and the run inserted in one statement of the
	// run's transaction, so concurrent spawns can never pass it together
	// (SQLite: one writer; PostgreSQL: SERIALIZABLE, and the count's row
	// is written by the insert's trigger). The count is the one the
	// triggers on runs keep (migration 0016): one row to read, not the
	// requester's active runs to scan, and no statement of its own.
	res, err := s.exec(ctx, tx, `INSERT INTO runs (`+insertRunCols+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT), ?, ?, ?, CAST(? AS BIGINT), ?,
			CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT)
		WHERE COALESCE((SELECT active FROM run_children WHERE requester_key = ?), 0) < ?`, append(args, r.RequesterKey, r.MaxActiveSiblings)...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	n, err := s.activeChildrenTx(ctx, tx, r.RequesterKey)
	if err != nil {
		return err
	}
	return &LimitError{Requester: r.RequesterKey, Active: n, Limit: r.MaxActiveSiblings}
}

const insertRunCols = `id, kind, child_key, requester_key, agent_id, label, task, preset, model, thinking,
	cleanup, timeout_ms, depth, role, state, options, owner_pid, owner_instance, heartbeat_at, created_at, started_at`

// CreateRun writes, in one transaction, the session the run works in (when
// sess is non-nil and it does not exist yet), the messages that start it
// (its task), and the queued run: a spawn is recorded whole or not at all.
//
// A run created in state running (its caller holds a lane slot and starts
// the turn as soon as this returns) is claimed in the same transaction:
// it starts now, and its session says running. When another run of its
// session is queued or running it is created queued instead (r.State
// says which), as ClaimRun would refuse it. r.Record, when set, is written
// in the same transaction too.
//
// When the session is created here (not forked) with msgs, all of them
// its, the new row carries their counts and its status, and nothing else
// can be in it: its seqs start at 1, no other run of it exists, and
// r.Transcript is set to msgs as written.
func (s *Store) CreateRun(ctx context.Context, sess *Session, msgs []Message, r *Run) error {
	if r.State == "" {
		r.State = RunQueued
	}
	now := s.nowMS()
	if r.CreatedAt == 0 {
		r.CreatedAt = now
	}
	if len(r.Options) == 0 {
		r.Options = json.RawMessage("{}")
	}
	want := r.State
	gen := s.ann.gen.Load()
	// The task and the call's record go in one append (one INSERT).
	all := msgs
	if r.Record != nil {
		all = append(append(make([]Message, 0, len(msgs)+len(r.Record.Messages)), msgs...), r.Record.Messages...)
	}
	bodies, err := s.encodeMessages(all)
	if err != nil {
		return err
	}
	whole := sess != nil && sess.ForkedFrom == "" && sess.Key == r.ChildKey && allOf(msgs, sess.Key)
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		r.State = want // the closure may run again: start over
		r.Transcript = nil
		fresh := false // the session is created here, with msgs alone
		if sess != nil {
			var counted []Message
			status := ""
			if whole {
				counted = msgs
				if want == RunRunning {
					status = RunRunning
				}
			}
			created, err := s.createSessionTx(ctx, tx, sess, now, status, counted)
			if err != nil {
				return err
			}
			fresh = created && whole
		}
		// r.MaxActiveSiblings is checked by the run's INSERT (insertRunTx).
		if len(all) > 0 {
			var first map[string]int64
			if fresh && len(msgs) > 0 {
				first = map[string]int64{sess.Key: 1}
			}
			if err := s.appendFromTx(ctx, tx, all, bodies, now, first); err != nil {
				return err
			}
		}
		if r.State == RunRunning && !fresh {
			var busy int
			if err := s.queryRow(ctx, tx, `SELECT count(*) FROM runs WHERE child_key = ? AND state IN ('queued','running')`, r.ChildKey).Scan(&busy); err != nil {
				return err
			}
			if busy > 0 {
				r.State = RunQueued
			}
		}
		r.StartedAt = 0
		if r.State == RunRunning {
			// The start is read inside the transaction: a run whose busy
			// check saw the session's previous run ended starts no earlier
			// than that run's end, even when this transaction waited in the
			// writer's queue (or was retried on PostgreSQL) after now.
			r.StartedAt = max(now, s.nowMS())
		}
		if err := s.insertRunTx(ctx, tx, r); err != nil {
			return err
		}
		if r.State == RunRunning && !fresh {
			if _, err := s.exec(ctx, tx, `UPDATE sessions SET status = 'running', updated_at = ? WHERE key = ?`, now, r.ChildKey); err != nil {
				return err
			}
		}
		if fresh {
			r.Transcript = append([]Message(nil), all[:len(msgs)]...)
		}
		if r.Record != nil {
			return s.claimForRecordTx(ctx, tx, r.Record, gen, now)
		}
		return nil
	})
	if err != nil {
		r.Transcript = nil
		return err
	}
	copy(msgs, all[:len(msgs)]) // the seqs assigned, as AppendMessages gives them back
	if r.Record != nil {
		copy(r.Record.Messages, all[len(msgs):])
		s.recorded(r.Record, gen)
	}
	return nil
}

// allOf reports whether every message of msgs is in session key.
func allOf(msgs []Message, key string) bool {
	for i := range msgs {
		if msgs[i].SessionKey != key {
			return false
		}
	}
	return true
}

// GetRun returns a run, or ErrNotFound.
func (s *Store) GetRun(ctx context.Context, id string) (*Run, error) {
	r, err := scanRun(s.readRow(ctx, "SELECT "+runCols+" FROM runs WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %q: %w", id, ErrNotFound)
	}
	return r, err
}

// RunFilter selects runs.
type RunFilter struct {
	Requesters []string // any of these requester keys
	States     []string
	Kind       string
	EndedSince int64 // ms: include terminal runs ended after this (0 = all)
	Limit      int
}

// ListRuns returns runs newest first.
func (s *Store) ListRuns(ctx context.Context, f RunFilter) ([]*Run, error) {
	q, args := listRunsQuery(f)
	rows, err := s.readRows(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list runs: %w", err)
	}
	return scanRuns(rows)
}

// scanRuns reads every row of rows (runCols, in order) and closes it.
func scanRuns(rows *sql.Rows) ([]*Run, error) {
	defer rows.Close()
	var out []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// listRunsQuery is ListRuns' query for f and its arguments.
func listRunsQuery(f RunFilter) (string, []any) {
	var where []string
	var args []any
	whereIn(&where, &args, "requester_key", f.Requesters)
	if activeOnly(f.States) {
		// Spelled as the partial index of active runs is, so it serves
		// the read (a list of active runs, with no requester).
		where = append(where, "state IN ('queued','running')")
	} else {
		whereIn(&where, &args, "state", f.States)
	}
	if f.Kind != "" {
		where = append(where, "kind = ?")
		args = append(args, f.Kind)
	}
	if f.EndedSince > 0 {
		where = append(where, "(state IN ('queued','running') OR ended_at >= ?)")
		args = append(args, f.EndedSince)
	}
	q := "SELECT " + runCols + " FROM runs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return q, args
}

// activeOnly reports whether states are exactly queued and running.
func activeOnly(states []string) bool {
	q, r := false, false
	for _, st := range states {
		switch st {
		case RunQueued:
			q = true
		case RunRunning:
			r = true
		default:
			return false
		}
	}
	return q && r
}

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// whereIn adds "col IN (?, ...)" and its values to a query being built
// (nothing when vals is empty).
func whereIn(where *[]string, args *[]any, col string, vals []string) {
	if len(vals) == 0 {
		return
	}
	*where = append(*where, col+" IN ("+placeholders(len(vals))+")")
	for _, v := range vals {
		*args = append(*args, v)
	}
}

// RunStates returns the current state of each run id (for cancellation
// requested by another process).
func (s *Store) RunStates(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.readRows(ctx, "SELECT id, state FROM runs WHERE id IN ("+placeholders(len(ids))+")", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return nil, err
		}
		out[id] = st
	}
	return out, rows.Err()
}

// ActiveChildren counts a requester's queued or running spawned children.
func (s *Store) ActiveChildren(ctx context.Context, requester string) (int, error) {
	return s.activeChildrenTx(ctx, nil, requester)
}

// activeChildrenQuery reads a requester's count of queued or running
// spawns, kept in run_children by the triggers on runs (migration 0016)
// in every transaction that inserts a run or moves it in or out of those
// states. No row: none ever was.
const activeChildrenQuery = `SELECT active FROM run_children WHERE requester_key = ?`

// activeChildrenTx is ActiveChildren inside tx (nil: a read transaction
// of its own).
func (s *Store) activeChildrenTx(ctx context.Context, tx *sql.Tx, requester string) (int, error) {
	var n int
	var err error
	if tx == nil {
		err = s.readRow(ctx, activeChildrenQuery, requester).Scan(&n)
	} else {
		err = s.queryRow(ctx, tx, activeChildrenQuery, requester).Scan(&n)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// ArchiveDue lists child sessions whose runs ended before cutoff (ms) and
// are not archived yet, for runs with cleanup keep.
func (s *Store) ArchiveDue(ctx context.Context, cutoff int64) ([]string, error) {
	rows, err := s.readRows(ctx, `SELECT DISTINCT r.child_key FROM runs r JOIN sessions s ON s.key = r.child_key
		WHERE r.kind = 'spawn' AND r.state NOT IN ('queued','running') AND r.ended_at < ? AND s.archived_at IS NULL
		AND NOT EXISTS (SELECT 1 FROM runs r2 WHERE r2.child_key = r.child_key AND (r2.state IN ('queued','running') OR r2.ended_at >= ?))`, cutoff, cutoff)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
