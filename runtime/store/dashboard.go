package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Read queries of the web dashboard (package ui). They return raw rows;
// the dashboard applies policy to every session key before showing any of
// them.

// ChangeWatch tells whether anything was committed to the database since it
// last looked, by any connection of any process. On SQLite it holds one
// connection and reads PRAGMA data_version on it, which changes whenever
// another connection commits. On PostgreSQL it reads the changes sequence,
// which every Store's writer advances after each commit (so a watcher that
// sees it move also sees what was committed). It is cheap (no table is
// read) and so can be polled a few times a second.
type ChangeWatch struct {
	conn *sql.Conn
	q    string
}

// WatchChanges opens a ChangeWatch. Close it when done: it holds a
// connection of the pool.
func (s *Store) WatchChanges(ctx context.Context) (*ChangeWatch, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: watch changes: %w", err)
	}
	q := "PRAGMA data_version"
	if s.d == postgresDialect {
		q = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM changes"
	}
	return &ChangeWatch{conn: conn, q: q}, nil
}

// Version returns the current data version: a different value than the
// previous call means some other connection committed in between.
func (w *ChangeWatch) Version(ctx context.Context) (int64, error) {
	var v int64
	if err := w.conn.QueryRowContext(ctx, w.q).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: data_version: %w", err)
	}
	return v, nil
}

// Close returns the connection to the pool.
func (w *ChangeWatch) Close() error { return w.conn.Close() }

// LastMessage returns a session's newest message (ok false when it has
// none): the dashboard's "latest step" of a run.
func (s *Store) LastMessage(ctx context.Context, key string) (Message, bool, error) {
	m := Message{SessionKey: key}
	var content string
	err := s.readRow(ctx, `SELECT seq, role, content, trust, tokens_in, tokens_out, created_at FROM messages
		WHERE session_key = ? ORDER BY seq DESC LIMIT 1`, key).
		Scan(&m.Seq, &m.Role, &content, &m.Trust, &m.TokensIn, &m.TokensOut, &m.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("store: last message of %q: %w", key, err)
	}
	if err := json.Unmarshal([]byte(content), &m.Content); err != nil {
		m.Content = Content{Text: content}
	}
	return m, true, nil
}

// RunUsage is the runs of one session (as the child) in one state on one
// UTC day, summed.
type RunUsage struct {
	ChildKey  string
	AgentID   string
	State     string
	Day       string // YYYY-MM-DD (UTC) of the run's creation
	Runs      int
	TokensIn  int64
	TokensOut int64
	CostUSD   float64
}

// RunUsageByDay sums runs created at or after since (ms; 0 = all) per
// child session, state and UTC day. The caller keeps the rows whose
// ChildKey it may see and adds them up.
func (s *Store) RunUsageByDay(ctx context.Context, since int64) ([]RunUsage, error) {
	rows, err := s.readRows(ctx, `SELECT child_key, agent_id, state, `+s.d.runDay+` AS day,
		count(*), sum(tokens_in), sum(tokens_out), sum(cost_usd)
		FROM runs WHERE created_at >= ? GROUP BY child_key, agent_id, state, day ORDER BY day, child_key`, since)
	if err != nil {
		return nil, fmt.Errorf("store: run usage: %w", err)
	}
	defer rows.Close()
	var out []RunUsage
	for rows.Next() {
		var u RunUsage
		if err := rows.Scan(&u.ChildKey, &u.AgentID, &u.State, &u.Day, &u.Runs, &u.TokensIn, &u.TokensOut, &u.CostUSD); err != nil {
			return nil, fmt.Errorf("store: run usage: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// RunsIn returns the runs that worked in session key (as their child
// session), newest first, at most limit.
func (s *Store) RunsIn(ctx context.Context, key string, limit int) ([]*Run, error) {
	rows, err := s.readRows(ctx, "SELECT "+runCols+" FROM runs WHERE child_key = ? ORDER BY created_at DESC, id DESC LIMIT ?", key, limit)
	if err != nil {
		return nil, fmt.Errorf("store: runs in %q: %w", key, err)
	}
	out, err := scanRuns(rows)
	if err != nil {
		return nil, fmt.Errorf("store: runs in %q: %w", key, err)
	}
	return out, nil
}
