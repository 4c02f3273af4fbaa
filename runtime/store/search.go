package store

import (
	"context"
	"fmt"
	"strings"
	"unicode"
)

// Hit is one full-text search result.
type Hit struct {
	Key     string
	Label   string
	AgentID string
	Snippet string
	Role    string
	Seq     int64
	Score   float64 // higher is better (negated BM25)
}

// SearchQuery is a full-text query over message text.
type SearchQuery struct {
	Query      string
	ExcludeKey string // a session to leave out ("" = none)
}

// Search streams hits best first to yield until it returns false, so the
// caller can apply policy before its limit. The query is free text: each
// word must appear (prefix match on the last word); FTS5 syntax characters
// are neutralised, so any user input is a valid query.
func (s *Store) Search(ctx context.Context, q SearchQuery, yield func(Hit) bool) error {
	match := ftsQuery(q.Query)
	if match == "" {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT m.session_key, s.label, s.agent_id,
			snippet(messages_fts, 0, '[', ']', '…', 12), m.role, m.seq, bm25(messages_fts)
		FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid JOIN sessions s ON s.key = m.session_key
		WHERE messages_fts MATCH ? AND m.session_key != ? AND s.archived_at IS NULL
		ORDER BY bm25(messages_fts), m.id DESC`, match, q.ExcludeKey)
	if err != nil {
		return fmt.Errorf("store: search %q: %w", q.Query, err)
	}
	defer rows.Close()
	for rows.Next() {
		var h Hit
		if err := rows.Scan(&h.Key, &h.Label, &h.AgentID, &h.Snippet, &h.Role, &h.Seq, &h.Score); err != nil {
			return err
		}
		h.Score = -h.Score
		if !yield(h) {
			return nil
		}
	}
	return rows.Err()
}

// ftsQuery turns free text into an FTS5 MATCH expression: every token
// quoted (so operators and punctuation are literal), the last one a prefix.
func ftsQuery(text string) string {
	words := strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_'
	})
	if len(words) == 0 {
		return ""
	}
	for i, w := range words {
		words[i] = `"` + w + `"`
	}
	words[len(words)-1] += "*"
	return strings.Join(words, " ")
}
