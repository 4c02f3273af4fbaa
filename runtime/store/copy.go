package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Copy moves a whole plane from one database to another, on either
// backend (SQLite → PostgreSQL, SQLite → SQLite, PostgreSQL → SQLite, ...),
// for `sessionplane db migrate`. Callers speak no SQL: the tables, their
// order and what is left out are decided here.

// copyTable is a table Copy moves, with the column it pages by.
type copyTable struct {
	name     string
	key      string // primary key: rows are read in its order, a page after the last key
	identity bool   // key is an integer id the backend generates (its sequence is moved past the copied ids)
}

// copyTables are copied in this order: parents before the rows that
// reference them (messages → sessions, tasks → task_lists, task_events →
// tasks).
var copyTables = []copyTable{
	{name: "sessions", key: "key"},
	{name: "messages", key: "id", identity: true},
	{name: "runs", key: "id"},
	{name: "announces", key: "id", identity: true},
	{name: "cron_jobs", key: "id"},
	{name: "task_lists", key: "name"},
	{name: "tasks", key: "id", identity: true},
	{name: "task_events", key: "id", identity: true},
	{name: "budget_usage", key: "scope"},
	{name: "approvals", key: "id"},
}

// notCopied are the schema's tables Copy leaves out, and why. A table
// neither copied nor listed here makes Copy refuse (a later migration must
// decide), so nothing is lost silently.
var notCopied = map[string]string{
	"schema_migrations": "the target's own migrations create its schema at the same version",
	"instances":         "rows of server processes on the source's host: meaningless elsewhere; runs they owned are recovered by the first server on the target (running → unknown, queued → adopted)",
	"http_sessions":     "MCP HTTP sessions (Mcp-Session-Id): clients initialize again",
	"run_children":      "active children per requester, kept by the target's own triggers on runs as the copied runs are inserted",
	// SQLite's FTS5 index and its shadow tables: the target indexes the
	// copied messages itself (SQLite: its triggers; PostgreSQL: the tsv column).
	"messages_fts":         "search index, rebuilt on the target",
	"messages_fts_data":    "search index, rebuilt on the target",
	"messages_fts_idx":     "search index, rebuilt on the target",
	"messages_fts_docsize": "search index, rebuilt on the target",
	"messages_fts_config":  "search index, rebuilt on the target",
	"messages_fts_content": "search index, rebuilt on the target",
}

// NotCopied lists the tables Copy leaves out with the reason, for the
// command's summary.
func NotCopied() map[string]string {
	out := make(map[string]string, len(notCopied))
	for k, v := range notCopied {
		if !strings.HasPrefix(k, "messages_fts_") {
			out[k] = v
		}
	}
	return out
}

// CopyOptions tune Copy. A nil *CopyOptions takes the defaults.
type CopyOptions struct {
	// IgnoreRunning copies even when a server process heartbeat the source
	// within RunningWithin. The copy is then not a snapshot: rows written
	// while it runs may be missing or half there.
	IgnoreRunning bool
	// RunningWithin is how fresh a heartbeat means "a server is running on
	// the source" (default 30s; servers beat every few seconds).
	RunningWithin time.Duration
	// BatchRows and BatchBytes bound one write transaction on the target,
	// and so the memory Copy holds (defaults 1000 rows, 8 MB).
	BatchRows  int
	BatchBytes int
	// Progress, when set, is called after each committed batch with the
	// rows of table copied so far and the source's row count.
	Progress func(table string, done, total int64)
}

// TableCount is one table's rows on both sides after a copy.
type TableCount struct {
	Table          string
	Source, Target int64
}

// SearchCheck is one sample search run on both sides after a copy.
type SearchCheck struct {
	Query string
	Hits  int // on each side (they are equal when Copy returns nil)
}

// CopyResult is what Copy moved and verified.
type CopyResult struct {
	Tables   []TableCount
	Searches []SearchCheck
}

// ErrTargetNotEmpty is wrapped by Copy's error when the target already
// holds a plane.
var ErrTargetNotEmpty = errors.New("the target database is not empty")

// ErrSourceInUse is wrapped by Copy's error when a server is running on
// the source.
var ErrSourceInUse = errors.New("a server is running on the source database")

// Copy copies every table of from's plane into to, which must be empty
// and at the same schema version, in batches (each its own write
// transaction on to, so memory stays bounded), keeping ids, seqs and
// ordering as they are; it rebuilds the search index with to's own
// indexing and moves to's id sequences past the copied ids. It then
// verifies: equal row counts per table, and sample searches that find the
// same hits on both. A failed copy leaves to partly filled: empty it
// before trying again.
func Copy(ctx context.Context, from, to *Store, opts *CopyOptions) (*CopyResult, error) {
	if opts == nil {
		opts = &CopyOptions{}
	}
	o := *opts
	if o.RunningWithin <= 0 {
		o.RunningWithin = 30 * time.Second
	}
	if o.BatchRows <= 0 {
		o.BatchRows = 1000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 8 << 20
	}
	if from.SchemaVersion() != to.SchemaVersion() {
		return nil, fmt.Errorf("store: copy: the source %s is at schema version %d, the target %s at %d: both must be opened by the same sessionplane",
			from.Path(), from.SchemaVersion(), to.Path(), to.SchemaVersion())
	}
	if err := from.checkTablesKnown(ctx); err != nil {
		return nil, err
	}
	if !o.IgnoreRunning {
		if err := from.checkNotRunning(ctx, o.RunningWithin); err != nil {
			return nil, err
		}
	}
	if err := to.checkEmpty(ctx); err != nil {
		return nil, err
	}
	res := &CopyResult{}
	for _, t := range copyTables {
		total, err := from.count(ctx, t.name)
		if err != nil {
			return nil, fmt.Errorf("store: copy: count %s in the source %s: %w", t.name, from.Path(), err)
		}
		if err := copyOne(ctx, from, to, t, total, &o); err != nil {
			return nil, err
		}
	}
	if fn := to.d.resetIdentity; fn != nil {
		err := to.Tx(ctx, func(tx *sql.Tx) error {
			for _, t := range copyTables {
				if t.identity {
					if _, err := tx.ExecContext(ctx, fn(t.name)); err != nil {
						return fmt.Errorf("table %s: %w", t.name, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("store: copy: move the id sequences past the copied ids: %w", err)
		}
	}
	if err := verifyCopy(ctx, from, to, res); err != nil {
		return res, err
	}
	return res, nil
}

// checkTablesKnown refuses a schema holding a table Copy does not know
// (neither copied nor listed as left out).
func (s *Store) checkTablesKnown(ctx context.Context) error {
	names, err := s.tables(ctx)
	if err != nil {
		return fmt.Errorf("store: copy: list the tables of %s: %w", s.Path(), err)
	}
	known := map[string]bool{}
	for _, t := range copyTables {
		known[t.name] = true
	}
	for _, n := range names {
		if !known[n] && notCopied[n] == "" {
			return fmt.Errorf("store: copy: table %s of %s is unknown to this sessionplane's copy (add it to copyTables or notCopied in runtime/store/copy.go)", n, s.Path())
		}
	}
	return nil
}

// tables lists the schema's tables.
func (s *Store) tables(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.d.tablesSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// checkNotRunning refuses a source with a server process whose heartbeat
// is fresher than within.
func (s *Store) checkNotRunning(ctx context.Context, within time.Duration) error {
	insts, err := s.Instances(ctx)
	if err != nil {
		return fmt.Errorf("store: copy: read the instances of the source %s: %w", s.Path(), err)
	}
	now := s.nowMS()
	for _, in := range insts {
		if age := now - in.HeartbeatAt; age < within.Milliseconds() {
			return fmt.Errorf("store: copy: %w: %s: instance %s (pid %d on host %s) beat %.1fs ago: stop the servers using it and try again, or pass --ignore-running to copy anyway (not a snapshot: writes made meanwhile may be missing)",
				ErrSourceInUse, s.Path(), in.ID, in.PID, in.Host, float64(age)/1000)
		}
	}
	return nil
}

// checkEmpty refuses a target holding rows in any copied table.
func (s *Store) checkEmpty(ctx context.Context) error {
	for _, t := range copyTables {
		var n int
		err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+t.name+" LIMIT 1) x").Scan(&n)
		if err != nil {
			return fmt.Errorf("store: copy: read %s of the target %s: %w", t.name, s.Path(), err)
		}
		if n > 0 {
			how := "name a new file (or delete this one and its -wal and -shm files)"
			if s.d == postgresDialect {
				how = "create a new database (createdb NAME) and name it in --to, or empty this one: DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
			}
			return fmt.Errorf("store: copy: %w: %s: table %s holds rows; migrate only into an empty database: %s", ErrTargetNotEmpty, s.Path(), t.name, how)
		}
	}
	return nil
}

func (s *Store) count(ctx context.Context, table string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}

// columns are a table's column names, in order.
func (s *Store) columns(ctx context.Context, table string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT * FROM "+table+" WHERE 1 = 0")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return rows.Columns()
}

// copyOne copies one table, a page (one transaction on to) at a time.
func copyOne(ctx context.Context, from, to *Store, t copyTable, total int64, o *CopyOptions) error {
	src, err := from.columns(ctx, t.name)
	if err != nil {
		return fmt.Errorf("store: copy: columns of %s in the source: %w", t.name, err)
	}
	dst, err := to.columns(ctx, t.name)
	if err != nil {
		return fmt.Errorf("store: copy: columns of %s in the target: %w", t.name, err)
	}
	have := map[string]bool{}
	for _, c := range dst {
		have[c] = true
	}
	// The source's index column is not data: the target indexes the body.
	var cols []string
	keyAt, bodyAt := -1, -1
	for _, c := range src {
		if t.name == "messages" && c == from.d.indexCol {
			continue
		}
		if !have[c] {
			return fmt.Errorf("store: copy: column %s.%s of the source has no place in the target %s", t.name, c, to.Path())
		}
		switch c {
		case t.key:
			keyAt = len(cols)
		case "body":
			bodyAt = len(cols)
		}
		cols = append(cols, c)
	}
	if keyAt < 0 {
		return fmt.Errorf("store: copy: table %s of the source has no column %s", t.name, t.key)
	}
	insCols := cols
	index := t.name == "messages" && to.d.indexCol != ""
	if index {
		if bodyAt < 0 {
			return fmt.Errorf("store: copy: table messages of the source has no column body")
		}
		insCols = append(append([]string{}, cols...), to.d.indexCol)
	}
	sel := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.name
	var last any
	var done int64
	for {
		q, args := sel+" ORDER BY "+t.key+" LIMIT ?", []any{o.BatchRows}
		if last != nil {
			q, args = sel+" WHERE "+t.key+" > ? ORDER BY "+t.key+" LIMIT ?", []any{last, o.BatchRows}
		}
		page, err := readPage(ctx, from, q, args, len(cols), o.BatchBytes)
		if err != nil {
			return fmt.Errorf("store: copy: read %s from the source after %s = %v: %w", t.name, t.key, last, err)
		}
		if len(page) == 0 {
			return nil
		}
		if index {
			for i := range page {
				body, _ := page[i][bodyAt].(string)
				if b, ok := page[i][bodyAt].([]byte); ok {
					body = string(b)
				}
				page[i] = append(page[i], to.d.indexValue(body))
			}
		}
		if err := to.insertPage(ctx, t, insCols, keyAt, page); err != nil {
			return err
		}
		done += int64(len(page))
		last = page[len(page)-1][keyAt]
		if o.Progress != nil {
			o.Progress(t.name, done, total)
		}
	}
}

// readPage reads up to the query's LIMIT rows, stopping early once they
// hold maxBytes (a page is never empty while rows remain).
func readPage(ctx context.Context, s *Store, q string, args []any, n, maxBytes int) ([][]any, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var page [][]any
	size := 0
	for rows.Next() {
		vals := make([]any, n)
		ptrs := make([]any, n)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for _, v := range vals {
			switch v := v.(type) {
			case string:
				size += len(v)
			case []byte:
				size += len(v)
			default:
				size += 8
			}
		}
		page = append(page, vals)
		if size >= maxBytes {
			break
		}
	}
	return page, rows.Err()
}

// copyChunk bounds the rows of one multi-row INSERT (and its parameters:
// SQLite allows 32766, PostgreSQL 65535).
const copyChunk = 100

// insertPage writes a page in one write transaction. When it fails, the
// rows are tried one by one in a transaction that is always rolled back,
// to name the row at fault.
func (s *Store) insertPage(ctx context.Context, t copyTable, cols []string, keyAt int, page [][]any) error {
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		if t.name == "messages" {
			if err := s.markIndex(ctx, tx); err != nil { // index what the page inserts (ftsindex.go)
				return err
			}
		}
		for i := 0; i < len(page); i += copyChunk {
			chunk := page[i:min(i+copyChunk, len(page))]
			if _, err := tx.ExecContext(ctx, s.insertSQL(t.name, cols, len(chunk)), flatten(chunk)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		return nil
	}
	errRollback := errors.New("rollback")
	var bad error
	_ = s.Tx(ctx, func(tx *sql.Tx) error {
		bad = nil
		for _, r := range page {
			if _, err := tx.ExecContext(ctx, s.insertSQL(t.name, cols, 1), r...); err != nil {
				hint := ""
				if pgCode(err) == "22021" {
					hint = "; PostgreSQL cannot store a NUL character in text: remove it from that row in the source first"
				}
				bad = fmt.Errorf("store: copy: table %s, row %s = %v: %w%s (the target now holds a partial copy: empty it before trying again)", t.name, t.key, r[keyAt], err, hint)
				return err
			}
		}
		return errRollback
	})
	if bad != nil {
		return bad
	}
	first, lastKey := page[0][keyAt], page[len(page)-1][keyAt]
	return fmt.Errorf("store: copy: table %s, rows %s %v..%v: %w (the target now holds a partial copy: empty it before trying again)", t.name, t.key, first, lastKey, err)
}

// insertSQL is a multi-row INSERT of n rows; the index column (last, when
// the target has one) is cast from its text form.
func (s *Store) insertSQL(table string, cols []string, n int) string {
	one := make([]string, len(cols))
	for i, c := range cols {
		one[i] = "?"
		if table == "messages" && c == s.d.indexCol && s.d == postgresDialect {
			one[i] = "CAST(? AS tsvector)"
		}
	}
	row := "(" + strings.Join(one, ", ") + ")"
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

func flatten(rows [][]any) []any {
	var out []any
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// sampleSearches is how many words from the source's messages are
// searched on both sides to verify the index.
const sampleSearches = 3

// verifyCopy compares row counts per table and the hits of sample
// searches, filling res.
func verifyCopy(ctx context.Context, from, to *Store, res *CopyResult) error {
	var diff []string
	for _, t := range copyTables {
		a, err := from.count(ctx, t.name)
		if err != nil {
			return fmt.Errorf("store: copy: verify: count %s in the source: %w", t.name, err)
		}
		b, err := to.count(ctx, t.name)
		if err != nil {
			return fmt.Errorf("store: copy: verify: count %s in the target: %w", t.name, err)
		}
		res.Tables = append(res.Tables, TableCount{Table: t.name, Source: a, Target: b})
		if a != b {
			diff = append(diff, fmt.Sprintf("%s: %d rows in the source, %d in the target", t.name, a, b))
		}
	}
	if len(diff) > 0 {
		return fmt.Errorf("store: copy: verify: row counts differ (was the source written meanwhile?): %s", strings.Join(diff, "; "))
	}
	words, err := from.sampleWords(ctx)
	if err != nil {
		return fmt.Errorf("store: copy: verify: pick sample words: %w", err)
	}
	for _, w := range words {
		a, err := hitSet(ctx, from, w)
		if err != nil {
			return fmt.Errorf("store: copy: verify: search %q in the source: %w", w, err)
		}
		b, err := hitSet(ctx, to, w)
		if err != nil {
			return fmt.Errorf("store: copy: verify: search %q in the target: %w", w, err)
		}
		if strings.Join(a, " ") != strings.Join(b, " ") {
			return fmt.Errorf("store: copy: verify: search %q finds %d message(s) in the source and %d in the target (first hits: %v vs %v)",
				w, len(a), len(b), a[:min(5, len(a))], b[:min(5, len(b))])
		}
		res.Searches = append(res.Searches, SearchCheck{Query: w, Hits: len(a)})
	}
	return nil
}

// sampleWords picks, from the oldest, middle and newest indexed messages,
// the word found in the fewest messages (counted up to sampleDFCap; the
// longer on a tie): a rare word's hit set is small enough to compare in
// full, where a common one would rank the whole corpus.
func (s *Store) sampleWords(ctx context.Context) ([]string, error) {
	var lo, hi int64
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM messages WHERE body != ''").Scan(&lo, &hi); err != nil {
		return nil, err
	}
	if hi == 0 {
		return nil, nil
	}
	seen := map[string]bool{}
	var out []string
	for _, at := range []int64{lo, lo + (hi-lo)/2, hi} {
		var body string
		err := s.readRow(ctx, "SELECT body FROM messages WHERE body != '' AND id >= ? ORDER BY id LIMIT 1", at).Scan(&body)
		if err != nil {
			return nil, err
		}
		best, bestDF := "", int64(-1)
		tried := 0
		for _, w := range queryTerms(body) {
			if len(w) > 64 || len(w) > pgMaxLexeme || seen[w] || tried >= 32 {
				continue
			}
			tried++
			var df int64
			if err := s.readRow(ctx, s.d.dfSQL, s.d.termMatch(w), sampleDFCap).Scan(&df); err != nil {
				return nil, err
			}
			if bestDF < 0 || df < bestDF || df == bestDF && len(w) > len(best) {
				best, bestDF = w, df
			}
		}
		if best != "" && len(out) < sampleSearches {
			seen[best] = true
			out = append(out, best)
		}
	}
	return out, nil
}

// sampleDFCap bounds the count of a sample word's messages.
const sampleDFCap = 1000

// maxSampleHits bounds the hits compared per sample search.
const maxSampleHits = 2000

// hitSet is the sorted "key#seq" of a search's hits.
func hitSet(ctx context.Context, s *Store, q string) ([]string, error) {
	var out []string
	err := s.Search(ctx, SearchQuery{Query: q}, func(h Hit) bool {
		out = append(out, fmt.Sprintf("%s#%d", h.Key, h.Seq))
		return len(out) < maxSampleHits
	})
	sort.Strings(out)
	return out, err
}
