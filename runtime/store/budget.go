package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// BudgetUsage is what was spent in one budget scope (run:<id>,
// tree:<session key>, day:<agent>:<date>), and the limits a tree scope was
// opened with.
type BudgetUsage struct {
	Scope       string
	Tokens      int64
	USD         float64
	LimitTokens int64
	LimitUSD    float64
}

// OpenBudgetScope creates a scope with its limits unless it exists (the
// first writer's limits stay: a spawn tree keeps its root's).
func (s *Store) OpenBudgetScope(ctx context.Context, scope string, limitTokens int64, limitUSD float64) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO budget_usage (scope, limit_tokens, limit_usd, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (scope) DO NOTHING`, scope, limitTokens, limitUSD, s.nowMS())
		return err
	})
}

// AddBudgetUsage adds one model call's tokens and cost to every scope, in
// one transaction, with SQL increments (several processes may spend in one
// scope at once).
func (s *Store) AddBudgetUsage(ctx context.Context, scopes []string, tokens int64, usd float64) error {
	if len(scopes) == 0 {
		return nil
	}
	return s.Tx(ctx, func(tx *sql.Tx) error {
		now := s.nowMS()
		for _, sc := range scopes {
			if _, err := s.exec(ctx, tx, `INSERT INTO budget_usage (scope, tokens, usd, updated_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (scope) DO UPDATE SET tokens = budget_usage.tokens + excluded.tokens, usd = budget_usage.usd + excluded.usd, updated_at = excluded.updated_at`,
				sc, tokens, usd, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// BudgetUsages returns the recorded usage of each scope that exists.
func (s *Store) BudgetUsages(ctx context.Context, scopes ...string) (map[string]BudgetUsage, error) {
	out := map[string]BudgetUsage{}
	if len(scopes) == 0 {
		return out, nil
	}
	args := make([]any, len(scopes))
	for i, sc := range scopes {
		args[i] = sc
	}
	rows, err := s.readRows(ctx, `SELECT scope, tokens, usd, limit_tokens, limit_usd FROM budget_usage WHERE scope IN (`+placeholders(len(scopes))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: budget usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u BudgetUsage
		if err := rows.Scan(&u.Scope, &u.Tokens, &u.USD, &u.LimitTokens, &u.LimitUSD); err != nil {
			return nil, err
		}
		out[u.Scope] = u
	}
	return out, rows.Err()
}

// TreeRoot returns the top-level child session of key's spawn tree: its
// ancestor (or itself) at depth 1; "" for a session at depth 0 or unknown.
func (s *Store) TreeRoot(ctx context.Context, key string) (string, error) {
	var root string
	err := s.readRow(ctx, `WITH RECURSIVE up(k, p, d, n) AS (
			SELECT key, parent_key, depth, 0 FROM sessions WHERE key = ?
			UNION ALL SELECT s.key, s.parent_key, s.depth, up.n + 1 FROM sessions s JOIN up ON s.key = up.p WHERE up.d > 1 AND up.n < 64)
		SELECT k FROM up WHERE d = 1 LIMIT 1`, key).Scan(&root)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return root, err
}
