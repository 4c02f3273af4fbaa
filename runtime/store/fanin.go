package store

import (
	"context"
	"fmt"
)

// GetRuns returns the runs with these ids, in the order of ids; ids that
// do not exist are left out.
func (s *Store) GetRuns(ctx context.Context, ids []string) ([]*Run, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.readRows(ctx, "SELECT "+runCols+" FROM runs WHERE id IN ("+placeholders(len(ids))+")", args...)
	if err != nil {
		return nil, fmt.Errorf("store: get runs: %w", err)
	}
	defer rows.Close()
	byID := make(map[string]*Run, len(ids))
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		byID[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*Run, 0, len(ids))
	for _, id := range ids {
		if r, ok := byID[id]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}
