package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// SessionRuns is what session_status shows of a session beyond its row:
// its children, its active run and its latest run.
type SessionRuns struct {
	Children []string // keys of the child sessions, oldest first
	Active   *Run     // the newest queued or running run, nil when none
	Last     *Run     // the newest run of any state, nil when none
}

// sessionZeros fills a run or child row of sessionStatusQuery out to
// sessionCols' shape, and runZeros the session's row out to runCols'
// shape, with typed zero values, so the UNION is well typed on every
// backend (PostgreSQL resolves each column's type across the members).
const (
	sessionZeros = `'', '', '', '', '', '', '', 0, '', '', '', '', 0, 0, 0, 0.0, 0, 0, 0, '', '', 0`
	runZeros     = `'', '', '', '', '', '', '', '', '', '', '', 0, 0, '', '', '', '', '', '{}', 0, 0, 0, 0, 0.0,
	0, '', 0, 0, 0, 0, ''`
	// childPad is runZeros with a child session's key in the id column
	// and its created_at in its own.
	childPad = `key, '', '', '', '', '', '', '', '', '', '', 0, 0, '', '', '', '', '', '{}', 0, 0, 0, 0, 0.0,
	0, '', 0, created_at, 0, 0, ''`
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
	SELECT 'a', ` + sessionZeros + `, ` + runCols + ` FROM (SELECT * FROM runs WHERE child_key = ? AND state IN ('queued','running')
		ORDER BY created_at DESC LIMIT 1) AS a
	UNION ALL
	SELECT 'l', ` + sessionZeros + `, ` + runCols + ` FROM (SELECT * FROM runs WHERE child_key = ? ORDER BY created_at DESC, id DESC LIMIT 1) AS l
	UNION ALL
	SELECT 'c', ` + sessionZeros + `, ` + childPad + ` FROM sessions WHERE parent_key = ?`

// SessionStatus reads key's session row, children, active run and latest
// run in one statement (see sessionStatusQuery). It returns an error
// wrapping ErrNotFound when there is no such session.
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
		r, err := scanRun(prefixed{rows, append([]any{&part}, sessionDests(dest)...)})
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

// SessionRuns reads key's children, active run and latest run (those of a
// session that does not exist are empty).
func (s *Store) SessionRuns(ctx context.Context, key string) (SessionRuns, error) {
	_, out, err := s.SessionStatus(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return SessionRuns{Children: []string{}}, nil
	}
	return out, err
}

// prefixed scans leading columns into first, the rest as row would.
type prefixed struct {
	row   interface{ Scan(...any) error }
	first []any
}

func (p prefixed) Scan(dest ...any) error {
	return p.row.Scan(append(p.first, dest...)...)
}
