package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Task statuses.
const (
	TaskPending    = "pending"
	TaskInProgress = "in_progress"
	TaskCompleted  = "completed"
)

// ValidTaskStatus reports whether s is a task status.
func ValidTaskStatus(s string) bool {
	return s == TaskPending || s == TaskInProgress || s == TaskCompleted
}

// Task is one row of a task list.
type Task struct {
	ID        int64
	List      string
	Title     string
	Status    string
	Owner     string // session key; "" = unowned
	CreatedAt int64
	UpdatedAt int64
}

// TaskEvent is one recorded change of a task: who, what, when.
type TaskEvent struct {
	ID        int64
	TaskID    int64
	Actor     string // the session that made the change
	Change    string // e.g. `status: pending → in_progress`
	CreatedAt int64
}

// TaskList is a named list with its task counts per status.
type TaskList struct {
	Name       string
	CreatedBy  string
	CreatedAt  int64
	Pending    int
	InProgress int
	Completed  int
}

// Total is the number of tasks in the list.
func (l TaskList) Total() int { return l.Pending + l.InProgress + l.Completed }

// ClaimError is returned by ClaimTask when the task is not claimable: it
// is owned already, or it is not pending.
type ClaimError struct {
	TaskID int64
	Owner  string // current owner ("" = none)
	Status string // current status
}

func (e *ClaimError) Error() string {
	if e.Owner != "" {
		return fmt.Sprintf("task %d is already claimed by %s (status %s)", e.TaskID, e.Owner, e.Status)
	}
	return fmt.Sprintf("task %d is %s, not pending: only a pending, unowned task can be claimed", e.TaskID, e.Status)
}

// TaskFilter selects the tasks of a list. Empty fields select everything.
type TaskFilter struct {
	List   string
	Status string
	Owner  string
}

// TaskChange is an update: each non-nil field is set.
type TaskChange struct {
	Title  *string
	Status *string
	Owner  *string
}

const taskCols = `id, list, title, status, owner, created_at, updated_at`

func scanTask(row interface{ Scan(...any) error }) (*Task, error) {
	var t Task
	if err := row.Scan(&t.ID, &t.List, &t.Title, &t.Status, &t.Owner, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return nil, err
	}
	return &t, nil
}

func (s *Store) insertTaskList(ctx context.Context, tx *sql.Tx, name, actor string, now int64) (bool, error) {
	res, err := s.exec(ctx, tx, `INSERT INTO task_lists (name, created_by, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
		name, actor, now)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s *Store) insertTaskEvent(ctx context.Context, tx *sql.Tx, taskID int64, actor, change string, now int64) error {
	_, err := s.exec(ctx, tx, `INSERT INTO task_events (task_id, actor, change, created_at) VALUES (?, ?, ?, ?)`, taskID, actor, change, now)
	return err
}

// CreateTaskList creates an empty list named name. created is false when
// the list already existed (which is not an error).
func (s *Store) CreateTaskList(ctx context.Context, name, actor string) (created bool, err error) {
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		created, err = s.insertTaskList(ctx, tx, name, actor, s.nowMS())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: create task list %q: %w", name, err)
	}
	return created, nil
}

// CreateTask adds t to its list, creating the list when missing, and
// records the creation in the task's history. t.ID and the timestamps are
// filled in; an empty status is pending. listCreated says whether the
// list was new.
func (s *Store) CreateTask(ctx context.Context, t *Task, actor string) (listCreated bool, err error) {
	if t.Status == "" {
		t.Status = TaskPending
	}
	if !ValidTaskStatus(t.Status) {
		return false, fmt.Errorf("store: task status %q is not pending, in_progress or completed", t.Status)
	}
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		now := s.nowMS()
		if listCreated, err = s.insertTaskList(ctx, tx, t.List, actor, now); err != nil {
			return err
		}
		if err := s.queryRow(ctx, tx, `INSERT INTO tasks (list, title, status, owner, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			t.List, t.Title, t.Status, t.Owner, now, now).Scan(&t.ID); err != nil {
			return err
		}
		t.CreatedAt, t.UpdatedAt = now, now
		change := fmt.Sprintf("created %q (status %s, owner %s)", t.Title, t.Status, ownerText(t.Owner))
		return s.insertTaskEvent(ctx, tx, t.ID, actor, change, now)
	})
	if err != nil {
		return false, fmt.Errorf("store: create task in %q: %w", t.List, err)
	}
	return listCreated, nil
}

func ownerText(o string) string {
	if o == "" {
		return "(none)"
	}
	return o
}

// GetTaskList returns a list with its counts, or ErrNotFound.
func (s *Store) GetTaskList(ctx context.Context, name string) (*TaskList, error) {
	lists, err := s.taskLists(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(lists) == 0 {
		return nil, fmt.Errorf("task list %q: %w", name, ErrNotFound)
	}
	return &lists[0], nil
}

// TaskLists returns every list with its counts, by name.
func (s *Store) TaskLists(ctx context.Context) ([]TaskList, error) { return s.taskLists(ctx, "") }

func (s *Store) taskLists(ctx context.Context, name string) ([]TaskList, error) {
	q := `SELECT l.name, l.created_by, l.created_at,
		count(CASE WHEN t.status = 'pending' THEN 1 END),
		count(CASE WHEN t.status = 'in_progress' THEN 1 END),
		count(CASE WHEN t.status = 'completed' THEN 1 END)
		FROM task_lists l LEFT JOIN tasks t ON t.list = l.name`
	var args []any
	if name != "" {
		q += " WHERE l.name = ?"
		args = append(args, name)
	}
	q += " GROUP BY l.name ORDER BY l.name"
	rows, err := s.readRows(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: task lists: %w", err)
	}
	defer rows.Close()
	var out []TaskList
	for rows.Next() {
		var l TaskList
		if err := rows.Scan(&l.Name, &l.CreatedBy, &l.CreatedAt, &l.Pending, &l.InProgress, &l.Completed); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// ListTasks returns the tasks f selects, oldest first (by id).
func (s *Store) ListTasks(ctx context.Context, f TaskFilter) ([]*Task, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"list", f.List}, {"status", f.Status}, {"owner", f.Owner}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	q := "SELECT " + taskCols + " FROM tasks"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	rows, err := s.readRows(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list tasks: %w", err)
	}
	defer rows.Close()
	var out []*Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// GetTask returns a task, or ErrNotFound.
func (s *Store) GetTask(ctx context.Context, id int64) (*Task, error) {
	return s.getTask(ctx, nil, id)
}

// getTask reads a task inside tx, or on the pool when tx is nil.
func (s *Store) getTask(ctx context.Context, tx *sql.Tx, id int64) (*Task, error) {
	const q = "SELECT " + taskCols + " FROM tasks WHERE id = ?"
	var row *sql.Row
	if tx == nil {
		row = s.readRow(ctx, q, id)
	} else {
		row = s.queryRow(ctx, tx, q, id)
	}
	t, err := scanTask(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("task %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get task %d: %w", id, err)
	}
	return t, nil
}

// TaskHistory returns a task's recorded changes, oldest first.
func (s *Store) TaskHistory(ctx context.Context, id int64) ([]TaskEvent, error) {
	rows, err := s.readRows(ctx, `SELECT id, task_id, actor, change, created_at FROM task_events WHERE task_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("store: task history %d: %w", id, err)
	}
	defer rows.Close()
	var out []TaskEvent
	for rows.Next() {
		var e TaskEvent
		if err := rows.Scan(&e.ID, &e.TaskID, &e.Actor, &e.Change, &e.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// UpdateTask applies ch to task id and records one history event per field
// that changed, in one transaction. It returns the updated task and the
// changes made (none when every given value equals the current one).
func (s *Store) UpdateTask(ctx context.Context, id int64, ch TaskChange, actor string) (*Task, []string, error) {
	if ch.Status != nil && !ValidTaskStatus(*ch.Status) {
		return nil, nil, fmt.Errorf("store: task status %q is not pending, in_progress or completed", *ch.Status)
	}
	var out *Task
	var changes []string
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		changes = nil
		t, err := s.getTask(ctx, tx, id)
		if err != nil {
			return err
		}
		if ch.Title != nil && *ch.Title != t.Title {
			changes = append(changes, fmt.Sprintf("title: %q → %q", t.Title, *ch.Title))
			t.Title = *ch.Title
		}
		if ch.Status != nil && *ch.Status != t.Status {
			changes = append(changes, fmt.Sprintf("status: %s → %s", t.Status, *ch.Status))
			t.Status = *ch.Status
		}
		if ch.Owner != nil && *ch.Owner != t.Owner {
			changes = append(changes, fmt.Sprintf("owner: %s → %s", ownerText(t.Owner), ownerText(*ch.Owner)))
			t.Owner = *ch.Owner
		}
		out = t
		if len(changes) == 0 {
			return nil
		}
		now := s.nowMS()
		t.UpdatedAt = now
		if _, err := s.exec(ctx, tx, `UPDATE tasks SET title = ?, status = ?, owner = ?, updated_at = ? WHERE id = ?`,
			t.Title, t.Status, t.Owner, now, id); err != nil {
			return err
		}
		for _, c := range changes {
			if err := s.insertTaskEvent(ctx, tx, id, actor, c, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, changes, nil
}

// ClaimTask atomically makes owner the owner of task id and sets it
// in_progress, only if the task is pending and unowned: one conditional
// UPDATE in a write transaction, so of several sessions (or processes)
// claiming one task exactly one wins. The others get a *ClaimError naming
// the current owner; an unknown id gives ErrNotFound.
func (s *Store) ClaimTask(ctx context.Context, id int64, owner, actor string) (*Task, error) {
	if owner == "" {
		return nil, errors.New("store: claim needs an owner")
	}
	var out *Task
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		now := s.nowMS()
		res, err := s.exec(ctx, tx, `UPDATE tasks SET owner = ?, status = 'in_progress', updated_at = ?
			WHERE id = ? AND owner = '' AND status = 'pending'`, owner, now, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		t, err := s.getTask(ctx, tx, id)
		if err != nil {
			return err
		}
		if n != 1 {
			return &ClaimError{TaskID: id, Owner: t.Owner, Status: t.Status}
		}
		out = t
		return s.insertTaskEvent(ctx, tx, id, actor, fmt.Sprintf("claimed by %s (status pending → in_progress)", owner), now)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
