package store

import (
	"context"
	"database/sql"
)

// RecordModelServed notes the model a provider said answered a run's model
// call, on the run (when runID is set) and on its session, in one write.
// Callers record it when it first appears or changes, not on every call.
func (s *Store) RecordModelServed(ctx context.Context, runID, sessionKey, served string) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		if runID != "" {
			if _, err := s.exec(ctx, tx, `UPDATE runs SET model_served = ? WHERE id = ?`, served, runID); err != nil {
				return err
			}
		}
		_, err := s.exec(ctx, tx, `UPDATE sessions SET model_served = ? WHERE key = ?`, served, sessionKey)
		return err
	})
}
