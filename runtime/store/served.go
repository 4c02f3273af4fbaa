package store

import (
	"context"
	"database/sql"
)

// RecordModelServed notes the model a provider said answered a run's model
// call, on the run (when runID is set) and on its session, in one write.
// The run manager records it with the run's end (Outcome.ModelServed);
// this is for a value that must show at once (a model that differs).
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

// recordModelServedTx writes a finished run's served model on the run and
// its session, inside FinishRun's transaction.
func (s *Store) recordModelServedTx(ctx context.Context, tx *sql.Tx, runID, served string) error {
	if _, err := s.exec(ctx, tx, `UPDATE runs SET model_served = ? WHERE id = ?`, served, runID); err != nil {
		return err
	}
	_, err := s.exec(ctx, tx, `UPDATE sessions SET model_served = ? WHERE key = (SELECT child_key FROM runs WHERE id = ?)`, served, runID)
	return err
}
