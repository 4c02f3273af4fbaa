package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
)

// SessionRuns is what session_status shows of a session beyond its row:
// its children, its active run and its latest run (SessionStatus).
type SessionRuns struct {
	Children []string // keys of the child sessions, oldest first
	Active   *Run     // the newest queued or running run, nil when none
	Last     *Run     // the newest run of any state, nil when none
}

// statusRunAsSession is a run of sessionStatusQuery in the session
// columns (sessionCols' order and types): the columns session_status uses
// of a run ride in session columns of the same type, so the statement has
// the 23 columns of a session row and no more (modernc reads every
// column's name and declared type on every query: 35 columns before, a
// session row padded with the run's). statusRun maps them back:
//
//	key ← id, agent_id ← agent_id, kind ← cleanup, label ← options,
//	parent_key ← child_key, status ← state, tokens_in, tokens_out,
//	cost_usd and created_at ← their own, updated_at ← started_at,
//	archived_at ← ended_at.
const statusRunAsSession = `id, '', agent_id, cleanup, options, child_key, '', 0, '', '', '', state, 0, tokens_in, tokens_out, cost_usd,
	created_at, COALESCE(started_at, 0), COALESCE(ended_at, 0), '', '', 0`

// statusChild is a child session of sessionStatusQuery: its key and
// created_at in their own columns, typed zeros in the others.
const statusChild = `key, '', '', '', '', '', '', 0, '', '', '', '', 0, 0, 0, 0.0, created_at, 0, 0, '', '', 0`

// sessionStatusQuery reads a session's row, its active run, its latest
// run and its children in one statement: one read snapshot (on SQLite one
// read transaction, whose start — the WAL's shared-memory locks — costs
// about as much as the read itself) and one round trip. Every row is
// 's' (the session), 'a', 'l' (the runs) or 'c' (a child), then
// sessionCols (statusRunAsSession, statusChild). Standard SQL with ?
// placeholders: the derived tables are named, as PostgreSQL requires, and
// each column has one type across the members.
const sessionStatusQuery = `SELECT 's', ` + sessionCols + ` FROM sessions WHERE key = ?
	UNION ALL
	SELECT 'a', ` + statusRunAsSession + ` FROM (SELECT * FROM runs WHERE child_key = ? AND state IN ('queued','running')
		ORDER BY created_at DESC LIMIT 1) AS a
	UNION ALL
	SELECT 'l', ` + statusRunAsSession + ` FROM (SELECT * FROM runs WHERE child_key = ? ORDER BY created_at DESC, id DESC LIMIT 1) AS l
	UNION ALL
	SELECT 'c', ` + statusChild + ` FROM sessions WHERE parent_key = ?`

// statusRun is the run a row of statusRunAsSession carries.
func statusRun(r *Session) *Run {
	return &Run{ID: r.Key, AgentID: r.AgentID, ChildKey: r.ParentKey, State: r.Status, Cleanup: r.Kind,
		Options: json.RawMessage(r.Label), TokensIn: r.TokensIn, TokensOut: r.TokensOut, CostUSD: r.CostUSD,
		CreatedAt: r.CreatedAt, StartedAt: r.UpdatedAt, EndedAt: r.ArchivedAt}
}

// SessionStatus reads key's session row, children, active run and latest
// run in one statement (see sessionStatusQuery). The runs carry only
// what statusRunAsSession reads (id, agent, session, state, cleanup,
// options, spending, created, started and ended); read a run with GetRun for the rest. It
// returns an error wrapping ErrNotFound when there is no such session.
func (s *Store) SessionStatus(ctx context.Context, key string) (*Session, SessionRuns, error) {
	var out SessionRuns
	rows, err := s.readRows(briefRead(ctx), sessionStatusQuery, key, key, key, key)
	if err != nil {
		return nil, out, fmt.Errorf("store: status of session %q: %w", key, s.fault(err))
	}
	defer rows.Close()
	type child struct {
		key string
		at  int64
	}
	var (
		sess  *Session
		kids  []child
		part  string
		row   Session
		dests = append([]any{&part}, sessionDests(&row)...)
	)
	for rows.Next() {
		row = Session{}
		if err := rows.Scan(dests...); err != nil {
			return nil, out, fmt.Errorf("store: status of session %q: %w", key, err)
		}
		switch part {
		case "s":
			s := row
			sess = &s
		case "a":
			out.Active = statusRun(&row)
		case "l":
			out.Last = statusRun(&row)
		default:
			kids = append(kids, child{row.Key, row.CreatedAt})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, out, fmt.Errorf("store: status of session %q: %w", key, s.fault(err))
	}
	if sess == nil {
		return nil, out, fmt.Errorf("session %q: %w", key, ErrNotFound)
	}
	sort.Slice(kids, func(i, j int) bool {
		if kids[i].at != kids[j].at {
			return kids[i].at < kids[j].at
		}
		return kids[i].key < kids[j].key
	})
	out.Children = make([]string, len(kids))
	for i, k := range kids {
		out.Children[i] = k.key
	}
	return sess, out, nil
}
