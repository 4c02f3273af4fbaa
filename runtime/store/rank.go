package store

import (
	"context"
	"database/sql"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Ranking: BM25 (k1 1.2, b 0.75) computed here rather than by FTS5's
// bm25(), which counts each query word's documents over its whole posting
// list on every query (about 20 ms for a word in half of a million
// messages, whatever the number of rows ranked). FTS5 still finds the
// matching rowids; this file scores them from the stored message text with
// document frequencies counted up to dfCap and cached for dfTTL, and the
// corpus size and average length sampled and cached the same way. IDF is
// the non-negative form ln(1 + (N - df + 0.5) / (df + 0.5)).

const (
	bm25K1 = 1.2
	bm25B  = 0.75
	dfCap  = 20000 // a word in more documents than this counts as in dfCap
	dfTTL  = 30 * time.Second
)

type dfEntry struct {
	df int
	at time.Time
}

type rankStats struct {
	mu     sync.Mutex
	df     map[string]dfEntry
	n      int
	avgdl  float64
	bpw    float64 // bytes per word of the sampled messages
	statAt time.Time
}

// folders hold the chains that strip diacritics, like FTS5's unicode61
// tokenizer with remove_diacritics 2. A chain keeps state while it
// transforms, so concurrent searches each take their own.
var folders = sync.Pool{New: func() any {
	return transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
}}

// tokens splits text into the words FTS5 indexes (letters, digits and _
// runs), folded.
func tokens(text string) []string {
	if isASCII(text) {
		return asciiTokens(text) // folding changes no ASCII text: skip it
	}
	return foldTokens(text)
}

// foldTokens is tokens for any text: Unicode folding, then words.
func foldTokens(text string) []string {
	fold := folders.Get().(transform.Transformer)
	folded, _, err := transform.String(fold, text)
	folders.Put(fold)
	if err != nil {
		folded = text
	}
	return strings.FieldsFunc(strings.ToLower(folded), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_'
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// asciiTokens is tokens for ASCII text, byte by byte: the same words
// (letters, digits and '_', lower-cased), without the Unicode folding
// that ranking spent a fifth of a search's CPU on (ranked bodies are
// mostly ASCII).
func asciiTokens(text string) []string {
	lower := strings.ToLower(text) // ASCII: a copy only when something was upper-case
	var out []string
	start := -1
	for i := 0; i < len(lower); i++ {
		c := lower[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, lower[start:i])
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, lower[start:])
	}
	return out
}

// termCounts adds to tf[i] how often terms[i] occurs among the words of
// text and returns the number of words, both as tokens(text) splits and
// folds them. ASCII text is scanned in place: no lower-cased copy and no
// word list, which scoring a window of a thousand messages spent most of
// its allocations on.
func termCounts(text string, terms []string, tf []int) int {
	if !isASCII(text) {
		toks := tokens(text)
		for _, tok := range toks {
			for i, t := range terms {
				if tok == t {
					tf[i]++
					break
				}
			}
		}
		return len(toks)
	}
	words, start := 0, -1
	for i := 0; i <= len(text); i++ {
		if i < len(text) && isWordByte(text[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start < 0 {
			continue
		}
		words++
		w := text[start:i]
		start = -1
		for j, t := range terms {
			if equalLowerASCII(w, t) {
				tf[j]++
				break
			}
		}
	}
	return words
}

// isWordByte reports whether an ASCII byte belongs to a word (letters,
// digits and '_', as asciiTokens splits).
func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// equalLowerASCII reports whether the ASCII word w, lower-cased, is lower.
func equalLowerASCII(w, lower string) bool {
	if len(w) != len(lower) {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// queryTerms are the distinct folded words of a query.
func queryTerms(q string) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range tokens(q) {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// docFreq is how many messages contain term (up to dfCap), cached.
func (s *Store) docFreq(ctx context.Context, term string) (int, error) {
	s.rank.mu.Lock()
	if s.rank.df == nil {
		s.rank.df = map[string]dfEntry{}
	}
	e, ok := s.rank.df[term]
	s.rank.mu.Unlock()
	if ok && time.Since(e.at) < dfTTL {
		return e.df, nil
	}
	var df int
	err := s.readRow(ctx, s.d.dfSQL, s.d.termMatch(term), dfCap).Scan(&df)
	if err != nil {
		return 0, err
	}
	s.rank.mu.Lock()
	if len(s.rank.df) > 10000 {
		s.rank.df = map[string]dfEntry{} // bounded memory: start over
	}
	s.rank.df[term] = dfEntry{df: df, at: time.Now()}
	s.rank.mu.Unlock()
	return df, nil
}

// corpusStats returns the number of indexed messages and their average
// length in words (sampled from the newest 2,000), cached for dfTTL.
func (s *Store) corpusStats(ctx context.Context) (int, float64, error) {
	s.rank.mu.Lock()
	if time.Since(s.rank.statAt) < dfTTL && s.rank.n > 0 {
		n, avg := s.rank.n, s.rank.avgdl
		s.rank.mu.Unlock()
		return n, avg, nil
	}
	s.rank.mu.Unlock()
	var n int
	// messages ids grow with every insert; the newest id bounds the count
	// closely enough for an IDF.
	if err := s.readRow(ctx, `SELECT COALESCE(max(id), 0) FROM messages`).Scan(&n); err != nil {
		return 0, 0, err
	}
	// A message longer than SearchScoreBytes is not read (octet_length
	// reads its size from the record header; CASE skips the text): its
	// length in words is estimated from the bytes per word of the others.
	rows, err := s.readRows(ctx, `SELECT CASE WHEN octet_length(body) <= ? THEN body END, octet_length(body)
		FROM messages WHERE octet_length(body) > 0 ORDER BY id DESC LIMIT 2000`, s.limits.SearchScoreBytes)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	total, docs, shortBytes, shortWords, longBytes := 0, 0, 0, 0, 0
	for rows.Next() {
		var body sql.NullString
		var size int
		if err := rows.Scan(&body, &size); err != nil {
			return 0, 0, err
		}
		if body.Valid {
			n := max(len(tokens(body.String)), 1)
			total += n
			shortBytes += size
			shortWords += n
		} else {
			longBytes += size
		}
		docs++
	}
	if longBytes > 0 {
		total += int(float64(longBytes) / bytesPerWord(shortBytes, shortWords))
	}
	s.rank.mu.Lock()
	s.rank.bpw = bytesPerWord(shortBytes, shortWords)
	s.rank.mu.Unlock()
	avg := 1.0
	if docs > 0 && total > 0 {
		avg = float64(total) / float64(docs)
	}
	if n < 1 {
		n = 1
	}
	s.rank.mu.Lock()
	s.rank.n, s.rank.avgdl, s.rank.statAt = n, avg, time.Now()
	s.rank.mu.Unlock()
	return n, avg, nil
}

type scored struct {
	id    int64
	score float64        // higher is better
	body  sql.NullString // the text scored (NULL: too long, not read)
}

// windowDoc is a match to score: its text when it is at most
// SearchScoreBytes long, else only its size.
type windowDoc struct {
	id   int64
	body sql.NullString // NULL: longer than SearchScoreBytes, not read
	size int
}

// rankWindow scores the rankWindow newest matches of match below upper
// by BM25 over terms, best first. bound is the lowest rowid of that
// window, or 0 when the window reaches the oldest match.
//
// A message of at most SearchScoreBytes is read and scored; a longer one
// is not read at all (octet_length takes its size from the record header
// and CASE skips its text), so one huge message costs no more than a short
// one, and its estimated length keeps it from ranking first.
func (s *Store) rankWindow(ctx context.Context, match string, terms []string, upper int64) ([]scored, int64, error) {
	if s.d.windowRankSQL != "" {
		// One statement: the window's bound is its oldest row.
		docs, err := s.windowDocs(ctx, s.d.windowRankSQL, s.limits.SearchScoreBytes, match, upper, rankWindow)
		if err != nil {
			return nil, 0, err
		}
		var bound int64
		if len(docs) == rankWindow {
			bound = docs[len(docs)-1].id
		}
		ranked, err := s.score(ctx, docs, terms)
		return ranked, bound, err
	}
	bound, err := s.windowBound(ctx, match, upper)
	if err != nil {
		return nil, 0, err
	}
	docs, err := s.windowDocs(ctx, s.d.rankSQL, s.limits.SearchScoreBytes, match, bound, upper)
	if err != nil {
		return nil, 0, err
	}
	ranked, err := s.score(ctx, docs, terms)
	return ranked, bound, err
}

// windowDocs reads the matches a window query returns.
func (s *Store) windowDocs(ctx context.Context, q string, args ...any) ([]windowDoc, error) {
	rows, err := s.readRows(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var docs []windowDoc
	for rows.Next() {
		var d windowDoc
		if err := rows.Scan(&d.id, &d.body, &d.size); err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, rows.Err()
}

// score ranks docs by BM25 over terms, best first.
func (s *Store) score(ctx context.Context, docs []windowDoc, terms []string) ([]scored, error) {
	n, avgdl, err := s.corpusStats(ctx)
	if err != nil {
		return nil, err
	}
	s.rank.mu.Lock()
	bpw := s.rank.bpw
	s.rank.mu.Unlock()
	if bpw <= 0 {
		bpw = defaultBytesPerWord
	}
	// Per term, in the query's order (terms are distinct).
	idf := make([]float64, len(terms))
	for i, t := range terms {
		df, err := s.docFreq(ctx, t)
		if err != nil {
			return nil, err
		}
		idf[i] = math.Log(1 + (float64(n)-float64(df)+0.5)/(float64(df)+0.5))
	}
	tf := make([]int, len(terms))
	out := make([]scored, 0, len(docs))
	for _, d := range docs {
		if err := ctx.Err(); err != nil {
			return nil, err // a cancelled search stops within one message
		}
		s.work.rows.Add(1)
		clear(tf)
		var dl float64
		if d.body.Valid {
			s.work.bytes.Add(int64(len(d.body.String)))
			dl = float64(max(termCounts(d.body.String, terms, tf), 1))
		} else {
			// A long message is scored without reading it: it holds every
			// word (FTS5 matched it) at least once, and its length in words
			// is estimated from its size.
			for i := range tf {
				tf[i] = 1
			}
			dl = float64(d.size) / bpw
		}
		var score float64
		for i, w := range idf {
			f := float64(tf[i])
			score += w * f * (bm25K1 + 1) / (f + bm25K1*(1-bm25B+bm25B*dl/avgdl))
		}
		out = append(out, scored{id: d.id, score: score, body: d.body})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].score != out[j].score {
			return out[i].score > out[j].score
		}
		return out[i].id > out[j].id
	})
	return out, nil
}

// defaultBytesPerWord estimates a long message's length in words when the
// corpus sample has no short message to measure it by.
const defaultBytesPerWord = 6.0

// bytesPerWord is the average bytes per indexed word of a sample.
func bytesPerWord(bytes, words int) float64 {
	if bytes <= 0 || words <= 0 {
		return defaultBytesPerWord
	}
	return float64(bytes) / float64(words)
}
