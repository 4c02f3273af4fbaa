package store

import (
	"context"
	"database/sql"
)

// stmt returns the prepared statement for q (its placeholders rebound
// for the backend once, here), preparing it once (nil, nil
// when the cache is full or the store closed: run q unprepared). Used
// through tx.StmtContext, database/sql reuses the statement already
// prepared on the transaction's connection, and used on its own it reuses
// the one prepared on whichever pool connection runs it, so hot queries
// skip SQL parsing.
func (s *Store) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	if s.closed || s.nStmts >= maxStmts {
		return nil, nil
	}
	st, err := s.db.PrepareContext(ctx, s.d.rebind(q))
	if err != nil {
		return nil, err
	}
	s.stmts.Store(q, st)
	s.nStmts++
	return st, nil
}

// txStmt is stmt for a statement run inside a transaction. Preparing a
// statement for the cache takes a pool connection of its own, and while a
// transaction holds the only one (a process's first writes: registering
// the instance at start) that means opening another connection, schema
// read and all, on the write's path. So the first time a statement is met
// that way it answers nil (the statement runs unprepared on the
// transaction's connection); its next use caches it as stmt does. A
// statement run once per process never opens a connection.
func (s *Store) txStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	if s.db.Stats().Idle == 0 {
		s.stmtMu.Lock()
		_, seen := s.deferred[q]
		if !seen && len(s.deferred) < maxStmts {
			if s.deferred == nil {
				s.deferred = map[string]struct{}{}
			}
			s.deferred[q] = struct{}{}
			s.stmtMu.Unlock()
			return nil, nil
		}
		s.stmtMu.Unlock()
	}
	return s.stmt(ctx, q)
}

// readRow runs a single-row read on the pool with a cached statement.
func (s *Store) readRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := s.stmt(ctx, q)
	if err != nil || st == nil {
		return s.db.QueryRowContext(ctx, s.d.rebind(q), args...) // reports a prepare error the usual way
	}
	return st.QueryRowContext(ctx, args...)
}

// briefRead is the context of a read whose cost is bounded by an index
// lookup or a small table (a session by key, the session list, a
// session's runs): it is not watched for cancellation. Watching costs two
// goroutines per query (database/sql's and the SQLite driver's interrupt
// watcher), more than such a read itself on a read-only tool call; reads
// that can run long (search, history pages) keep their context.
func briefRead(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// QueryRow runs a single-row read with a cached prepared statement: for
// callers outside the store that read its tables directly.
func (s *Store) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.readRow(ctx, q, args...)
}

// readRows runs a read on the pool with a cached statement.
func (s *Store) readRows(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return s.db.QueryContext(ctx, s.d.rebind(q), args...)
	}
	return st.QueryContext(ctx, args...)
}

// exec runs a cached statement inside tx.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	s.wstats.stmts.Add(1)
	st, err := s.txStmt(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.ExecContext(ctx, s.d.rebind(q), args...)
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// txQuery runs a cached statement that returns rows inside tx.
func (s *Store) txQuery(ctx context.Context, tx *sql.Tx, q string, args ...any) (*sql.Rows, error) {
	s.wstats.stmts.Add(1)
	st, err := s.txStmt(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.QueryContext(ctx, s.d.rebind(q), args...)
	}
	return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}

// queryRow runs a cached single-row statement inside tx.
func (s *Store) queryRow(ctx context.Context, tx *sql.Tx, q string, args ...any) *sql.Row {
	s.wstats.stmts.Add(1)
	st, err := s.txStmt(ctx, q)
	if err != nil || st == nil {
		return tx.QueryRowContext(ctx, s.d.rebind(q), args...) // reports the prepare error the usual way
	}
	return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
}
