package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
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
// caller can apply policy before its limit. The query is free text: every
// word must appear (whole words, case- and accent-insensitive); FTS5 syntax
// characters are neutralised, so any user input is a valid query. There is
// no implicit prefix matching: a short prefix of a common word would merge
// hundreds of posting lists and make latency unpredictable.
func (s *Store) Search(ctx context.Context, q SearchQuery, yield func(Hit) bool) error {
	if n := len(q.Query); n > s.limits.SearchQueryBytes {
		return fmt.Errorf("store: search: the query is %d bytes, over the limit of %d ([limits] search_query_bytes): %w", n, s.limits.SearchQueryBytes, ErrTooLarge)
	}
	match := s.d.match(q.Query)
	if match == "" {
		return nil
	}
	if n := len(queryWords(q.Query)); n > s.limits.SearchQueryTerms {
		return fmt.Errorf("store: search: the query has %d words, over the limit of %d ([limits] search_query_terms): %w", n, s.limits.SearchQueryTerms, ErrTooLarge)
	}
	// Matches are ranked by BM25 (rank.go) within windows of the
	// rankWindow most recent matching messages, newest window first: a word
	// found in half the corpus costs one window, not the whole corpus.
	// Snippets and metadata are read for the hits that are kept.
	terms := queryTerms(q.Query)
	words := queryWords(q.Query)
	upper := int64(math.MaxInt64)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store: search %q: %w", q.Query, s.fault(err))
		}
		ranked, bound, err := s.rankWindow(ctx, match, terms, upper)
		if err != nil {
			return fmt.Errorf("store: search %q: %w", q.Query, s.fault(err))
		}
		for _, r := range ranked {
			h, ok, err := s.hit(ctx, match, terms, words, r, q.ExcludeKey)
			if err != nil {
				return fmt.Errorf("store: search %q: %w", q.Query, s.fault(err))
			}
			if !ok {
				continue
			}
			h.Score = r.score
			if !yield(h) {
				return nil
			}
		}
		if bound <= 0 {
			return nil
		}
		upper = bound
	}
}

// rankWindow is how many matching messages are ranked together (a
// variable so tests can exercise several windows on a small corpus).
var rankWindow = 1000

// windowBound is the lowest rowid of the rankWindow newest matches below
// upper, or 0 when fewer remain (the window reaches the oldest message).
func (s *Store) windowBound(ctx context.Context, match string, upper int64) (int64, error) {
	var bound int64
	err := s.readRow(ctx, s.d.windowSQL, match, upper, rankWindow-1).Scan(&bound)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return bound, err
}

// hit reads one ranked message's snippet and session; ok is false when the
// message belongs to the excluded or an archived session. words are the
// query's words as typed (queryWords), terms its folded words.
func (s *Store) hit(ctx context.Context, match string, terms, words []string, r scored, exclude string) (Hit, bool, error) {
	id := r.id
	var h Hit
	var archived int64
	var size int
	err := s.readRow(ctx, `SELECT m.session_key, s.label, s.agent_id, m.role, m.seq, COALESCE(s.archived_at, 0), octet_length(m.body)
		FROM messages m JOIN sessions s ON s.key = m.session_key WHERE m.id = ?`, id).
		Scan(&h.Key, &h.Label, &h.AgentID, &h.Role, &h.Seq, &archived, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return h, false, nil // deleted since it was ranked
	}
	if err != nil || h.Key == exclude || archived != 0 {
		return h, false, err
	}
	if s.d.goSnippet && size <= s.limits.SearchScoreBytes {
		// No snippet() in SQL: cut it from the text here, marked the same
		// way; the text ranked is at hand, else it is read.
		if r.body.Valid {
			h.Snippet = bodySnippet(r.body.String, terms)
			return h, true, nil
		}
		var body string
		if err := s.readRow(ctx, `SELECT body FROM messages WHERE id = ?`, id).Scan(&body); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return h, false, nil
			}
			return h, false, err
		}
		h.Snippet = bodySnippet(body, terms)
		return h, true, nil
	}
	if size > s.limits.SearchScoreBytes {
		// FTS5's snippet() would tokenize the whole message: build the
		// snippet from the prefix search reads instead.
		var prefix string
		err := s.readRow(ctx, `SELECT substr(body, 1, ?) FROM messages WHERE id = ?`, s.limits.SearchScoreBytes, id).Scan(&prefix)
		if err != nil {
			return h, false, err
		}
		if len(prefix) > s.limits.SearchScoreBytes {
			prefix = prefix[:s.limits.SearchScoreBytes]
		}
		h.Snippet = prefixSnippet(prefix, terms)
		return h, true, nil
	}
	if r.body.Valid && ftsSnippetOK(r.body.String, words) {
		// The text ranked is at hand: FTS5's snippet of it, cut here
		// (snippet.go) instead of by a MATCH statement per hit.
		h.Snippet = ftsSnippet(r.body.String, words)
		return h, true, nil
	}
	err = s.readRow(ctx, `SELECT snippet(messages_fts, 0, '[', ']', '…', 12) FROM messages_fts
		WHERE messages_fts MATCH ? AND rowid = ?`, match, id).Scan(&h.Snippet)
	if errors.Is(err, sql.ErrNoRows) {
		return h, false, nil
	}
	return h, err == nil, err
}

// ftsQuery turns free text into an FTS5 MATCH expression: every token
// quoted, so operators and punctuation are literal.
func ftsQuery(text string) string {
	words := queryWords(text)
	if len(words) == 0 {
		return ""
	}
	for i, w := range words {
		words[i] = `"` + w + `"`
	}
	return strings.Join(words, " ")
}

// queryWords are the words of a free-text query, as typed (the query
// word limit counts these).
func queryWords(text string) []string {
	return strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_'
	})
}

// prefixSnippet is a snippet of a long message cut from its first bytes:
// about twelve words around the first query word found there (marked like
// FTS5's snippet), else its first words, then "…".
func prefixSnippet(prefix string, terms []string) string {
	words := strings.Fields(strings.ToValidUTF8(prefix, ""))
	want := map[string]bool{}
	for _, t := range terms {
		want[t] = true
	}
	at := -1
	for i, w := range words {
		for _, t := range tokens(w) {
			if want[t] {
				at = i
				break
			}
		}
		if at >= 0 {
			break
		}
	}
	start := 0
	if at > 6 {
		start = at - 6
	}
	end := min(start+12, len(words))
	out := make([]string, 0, end-start)
	for i := start; i < end; i++ {
		w := words[i]
		if len(w) > 80 {
			w = strings.ToValidUTF8(w[:80], "") + "…"
		}
		if i == at {
			w = "[" + w + "]"
		}
		out = append(out, w)
	}
	s := strings.Join(out, " ")
	if start > 0 {
		s = "…" + s
	}
	return s + "…"
}

// mmapBytes is how much of a SQLite database file reads map into memory
// (PRAGMA mmap_size): pages past it are read with pread. 1 GiB covers a
// store of about 1.5 million messages; the mapping costs address space,
// not memory (the pages are the OS's file cache, shared by connections).
// An I/O error of the disk under a mapped page stops the process (SIGBUS)
// instead of failing the statement: like a kill -9, which the store
// survives.
const mmapBytes = 1 << 30
