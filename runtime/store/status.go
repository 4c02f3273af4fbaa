package store

import (
	"context"
	"database/sql"
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

// statusRunCols are the columns of a run session_status uses (the active
// run's id, state and start; the latest run's end, cleanup and what its
// budget lines need): a third of runCols, as every column costs its name,
// declared type and value on every read.
const statusRunCols = `id, agent_id, child_key, state, cleanup, options, tokens_in, tokens_out, cost_usd, created_at,
	COALESCE(started_at, 0), COALESCE(ended_at, 0)`

// sessionZeros fills a run or child row of sessionStatusQuery out to
// sessionCols' shape, and runZeros the session's row out to
// statusRunCols' shape, with typed zero values, so the UNION is well typed
// on every backend (PostgreSQL resolves each column's type across the
// members, two at a time).
const (
	sessionZeros = `'', '', '', '', '', '', '', 0, '', '', '', '', 0, 0, 0, 0.0, 0, 0, 0, '', '', 0`
	runZeros     = `'', '', '', '', '', '{}', 0, 0, 0.0, 0, 0, 0`
	// childPad is runZeros with a child session's key in the id column
	// and its created_at in its own.
	childPad = `key, '', '', '', '', '{}', 0, 0, 0.0, created_at, 0, 0`
)

// sessionStatusQuery reads a session's row, its active run, its latest
// run and its children in one statement: one read snapshot (on SQLite one
// read transaction, whose start — the WAL's shared-memory locks — costs
// about as much as the read itself) and one round trip. Every row is
// 's' (the session), 'a', 'l' (the runs) or 'c' (a child), then the
// session's columns, then the run's. Standard SQL with ? placeholders: the
// derived tables are named, as PostgreSQL requires.
const sessionStatusQuery = `SELECT 's', ` + sessionCols + `, ` + runZeros + ` FROM sessions WHERE key = ?
	UNION ALL
	SELECT 'a', ` + sessionZeros + `, ` + statusRunCols + ` FROM (SELECT * FROM runs WHERE child_key = ? AND state IN ('queued','running')
		ORDER BY created_at DESC LIMIT 1) AS a
	UNION ALL
	SELECT 'l', ` + sessionZeros + `, ` + statusRunCols + ` FROM (SELECT * FROM runs WHERE child_key = ? ORDER BY created_at DESC, id DESC LIMIT 1) AS l
	UNION ALL
	SELECT 'c', ` + sessionZeros + `, ` + childPad + ` FROM sessions WHERE parent_key = ?`

// scanStatusRun scans a row of sessionStatusQuery: its part and session
// columns into part and sess, its run columns into a Run.
func scanStatusRun(rows *sql.Rows, part *string, sess *Session) (*Run, error) {
	var r Run
	var opts string
	dest := append([]any{part}, sessionDests(sess)...)
	dest = append(dest, &r.ID, &r.AgentID, &r.ChildKey, &r.State, &r.Cleanup, &opts, &r.TokensIn, &r.TokensOut, &r.CostUSD,
		&r.CreatedAt, &r.StartedAt, &r.EndedAt)
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	r.Options = json.RawMessage(opts)
	return &r, nil
}

// SessionStatus reads key's session row, children, active run and latest
// run in one statement (see sessionStatusQuery). The runs carry only
// statusRunCols (id, agent, session, state, cleanup, options, spending,
// created, started and ended); read a run with GetRun for the rest. It
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
		sess, pad Session
		found     bool
		kids      []child
		part      string
	)
	for rows.Next() {
		dest := &pad // the zeros of a run or child row
		// The part is known only once the row is scanned; a session row
		// comes once, so its columns land in sess only for that row.
		if !found {
			dest = &sess
		}
		r, err := scanStatusRun(rows, &part, dest)
		if err != nil {
			return nil, out, fmt.Errorf("store: status of session %q: %w", key, err)
		}
		switch part {
		case "s":
			found = true
		case "a":
			out.Active = r
		case "l":
			out.Last = r
		default:
			kids = append(kids, child{r.ID, r.CreatedAt})
		}
		if !found {
			sess = Session{} // a run or child row came first: its zeros are not the session
		}
	}
	if err := rows.Err(); err != nil {
		return nil, out, fmt.Errorf("store: status of session %q: %w", key, s.fault(err))
	}
	if !found {
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
	return &sess, out, nil
}
