package store

import (
	"context"
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

// childPad fills a child-session row of sessionRunsQuery out to runCols'
// shape: the key in the id column, created_at in its own; the rest are
// typed zero values, so the UNION is well typed on every backend.
const childPad = `'c', key, '', '', '', '', '', '', '', '', '', '', 0, 0, '', '', '', '', '', '{}', 0, 0, 0, 0, 0.0,
	0, '', 0, created_at, 0, 0, ''`

// sessionRunsQuery reads a session's active run, latest run and children
// in one statement (one read snapshot, one round trip). Standard SQL with
// ? placeholders: the derived tables are named, as PostgreSQL requires.
const sessionRunsQuery = `SELECT 'a', ` + runCols + ` FROM (SELECT * FROM runs WHERE child_key = ? AND state IN ('queued','running')
		ORDER BY created_at DESC LIMIT 1) AS a
	UNION ALL
	SELECT 'l', ` + runCols + ` FROM (SELECT * FROM runs WHERE child_key = ? ORDER BY created_at DESC, id DESC LIMIT 1) AS l
	UNION ALL
	SELECT ` + childPad + ` FROM sessions WHERE parent_key = ?`

// SessionRuns reads key's children, active run and latest run in one
// query.
func (s *Store) SessionRuns(ctx context.Context, key string) (SessionRuns, error) {
	var out SessionRuns
	rows, err := s.readRows(briefRead(ctx), sessionRunsQuery, key, key, key)
	if err != nil {
		return out, fmt.Errorf("store: runs of session %q: %w", key, s.fault(err))
	}
	defer rows.Close()
	type child struct {
		key string
		at  int64
	}
	var kids []child
	for rows.Next() {
		var part string
		r, err := scanRun(prefixed{rows, &part})
		if err != nil {
			return out, fmt.Errorf("store: runs of session %q: %w", key, err)
		}
		switch part {
		case "a":
			out.Active = r
		case "l":
			out.Last = r
		default:
			kids = append(kids, child{r.ID, r.CreatedAt})
		}
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("store: runs of session %q: %w", key, s.fault(err))
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
	return out, nil
}

// prefixed scans a leading column into first, the rest as row would.
type prefixed struct {
	row   interface{ Scan(...any) error }
	first any
}

func (p prefixed) Scan(dest ...any) error {
	return p.row.Scan(append([]any{p.first}, dest...)...)
}
