package store

import (
	"database/sql"
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Backends a Store can run on.
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// dialect is what differs between the backends. Every Store method is
// written once, with `?` placeholders and SQL both backends accept; the
// few statements and behaviours that cannot be shared live here (and in
// the backend's search primitives, search.go).
type dialect struct {
	name string
	// rebind turns `?` placeholders into the backend's (PostgreSQL: $1,
	// $2, ...). The statement cache calls it once per SQL text.
	rebind func(q string) string
	// retryable reports an error that means "another writer got in the
	// way, run the whole transaction again": SQLITE_BUSY/LOCKED, or
	// PostgreSQL's serialization_failure (40001) and deadlock_detected
	// (40P01).
	retryable func(err error) bool
	// txOpts begins a write transaction: SQLite takes the write lock up
	// front (_txlock=immediate in the DSN); PostgreSQL runs SERIALIZABLE.
	txOpts *sql.TxOptions
	// migrations is the folder of embedded migrations.
	migrations string
	// insertMessage is the INSERT of one transcript message: its nine
	// values, then (PostgreSQL) the search lexemes (messageIndexArg).
	insertMessage string
	// insertN[n] is insertMessage with n rows of VALUES (1 ≤ n ≤
	// insertChunk), built at init from insertMessage.
	insertN []string
	// copyMessages copies a session's messages up to a seq into another
	// session (fork), index data included. Args: dst, src, atSeq.
	copyMessages string
	// returningSeq reserves a session's seqs with UPDATE … RETURNING
	// message_count (reserveSeqs); false: a read of message_count, then the
	// UPDATE.
	returningSeq bool
	// deferredIndex: the search index is filled at the end of each write
	// transaction (ftsindex.go), not by an insert trigger.
	deferredIndex bool
	// runDay is the SQL expression of a run's UTC creation day, YYYY-MM-DD.
	runDay string
	// The search primitives (search.go).
	match     func(query string) string // a free-text query as the backend's match argument ("" = nothing to find)
	termMatch func(term string) string  // one folded word as a match argument
	windowSQL string                    // lowest id of the newest rankWindow matches below an id (when no windowRankSQL)
	rankSQL   string                    // matches in [lower, upper) with their text to score (when no windowRankSQL)
	// windowRankSQL reads a whole window in one statement: the newest
	// matches below an id with their text to score, newest first, up to a
	// count ("" = windowSQL, then rankSQL over the window it bounds).
	windowRankSQL string
	dfSQL         string // matching documents, counted up to a cap
	goSnippet     bool   // no snippet() in SQL: hits' snippets are cut in Go (bodySnippet)
	// For Copy (copy.go): tablesSQL lists the schema's tables; indexCol is
	// the messages column that says how a row is indexed, which Copy fills
	// from body with indexValue instead of copying it (PostgreSQL: the
	// search vector; SQLite: fts_deferred = 1, the copy's transaction
	// indexes the row);
	// resetIdentity moves a table's id identity past its largest id ("" when
	// the backend does it itself, as SQLite's INTEGER PRIMARY KEY does).
	tablesSQL     string
	indexCol      string
	indexValue    func(body string) any
	resetIdentity func(table string) string
}

// sqliteInsertMessage sets fts_deferred: the transaction indexes the
// row before it commits, not the insert trigger (which indexes the rows of
// an older release's processes sharing the file: migration 0017).
const sqliteInsertMessage = `INSERT INTO messages (session_key, seq, role, content, body, trust, tokens_in, tokens_out, created_at, fts_deferred)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`

var sqliteDialect = &dialect{
	name:          BackendSQLite,
	rebind:        func(q string) string { return q },
	retryable:     isSQLiteBusy,
	txOpts:        nil,
	migrations:    "migrations/sqlite",
	insertMessage: sqliteInsertMessage,
	deferredIndex: true,
	// A copied message is indexed by the copy's transaction (insertPage
	// calls markIndex), not by the insert trigger kept for older releases.
	indexCol:   "fts_deferred",
	indexValue: func(string) any { return 1 },
	copyMessages: `INSERT INTO messages (session_key, seq, role, content, body, trust, tokens_in, tokens_out, created_at, fts_deferred)
		SELECT ?, seq, role, content, body, trust, tokens_in, tokens_out, created_at, 1 FROM messages
		WHERE session_key = ? AND seq <= ? ORDER BY seq`,
	runDay:    `date(created_at / 1000, 'unixepoch')`,
	match:     ftsQuery,
	termMatch: func(t string) string { return `"` + strings.ReplaceAll(t, `"`, `""`) + `"` },
	// No windowSQL and rankSQL: FTS5 walks the posting lists newest first
	// and stops at the count (EXPLAIN QUERY PLAN: the index consumes ORDER
	// BY rowid DESC, no sort).
	windowRankSQL: `SELECT m.id, CASE WHEN octet_length(m.body) <= ? THEN m.body END, octet_length(m.body)
		FROM messages_fts f JOIN messages m ON m.id = f.rowid
		WHERE messages_fts MATCH ? AND f.rowid < ? ORDER BY f.rowid DESC LIMIT ?`,
	dfSQL:     `SELECT count(*) FROM (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? LIMIT ?)`,
	tablesSQL: `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`,
}

var postgresDialect = &dialect{
	name:         BackendPostgres,
	rebind:       rebindDollar,
	retryable:    isPGRetryable,
	txOpts:       &sql.TxOptions{Isolation: sql.LevelSerializable},
	migrations:   "migrations/postgres",
	returningSeq: true,
	insertMessage: `INSERT INTO messages (session_key, seq, role, content, body, trust, tokens_in, tokens_out, created_at, tsv)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS tsvector))`,
	copyMessages: `INSERT INTO messages (session_key, seq, role, content, body, trust, tokens_in, tokens_out, created_at, tsv)
		SELECT CAST(? AS TEXT), seq, role, content, body, trust, tokens_in, tokens_out, created_at, tsv FROM messages
		WHERE session_key = ? AND seq <= ? ORDER BY seq`,
	runDay:    `to_char(to_timestamp(created_at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
	match:     pgQuery,
	termMatch: pgLexeme,
	windowSQL: `SELECT id FROM messages WHERE tsv @@ CAST(? AS tsquery) AND id < ?
		ORDER BY id DESC LIMIT 1 OFFSET ?`,
	rankSQL: `SELECT id, CASE WHEN octet_length(body) <= ? THEN body END, octet_length(body)
		FROM messages WHERE tsv @@ CAST(? AS tsquery) AND id >= ? AND id < ?`,
	dfSQL:     `SELECT count(*) FROM (SELECT 1 FROM messages WHERE tsv @@ CAST(? AS tsquery) LIMIT ?) d`,
	goSnippet: true,
	tablesSQL: `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`,
	indexCol:   "tsv",
	indexValue: lexemes,
	resetIdentity: func(table string) string {
		return `SELECT setval(pg_get_serial_sequence('` + table + `', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM ` + table + `), false)`
	},
}

// IsPostgresURL reports whether a --db value names a PostgreSQL database
// (postgres:// or postgresql://) rather than an SQLite file.
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// redactURL is a PostgreSQL URL without its password, for messages and
// Path.
func redactURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

func isSQLiteBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// pgCode is the SQLSTATE of a PostgreSQL error ("" when err is none).
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func isPGRetryable(err error) bool {
	switch pgCode(err) {
	case "40001", "40P01":
		return true
	}
	return false
}

// rebindDollar numbers the `?` placeholders of q as $1, $2, ... leaving
// alone a `?` inside a string literal, a quoted identifier, a
// dollar-quoted string or a comment.
func rebindDollar(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote: still inside
						j += 2
						continue
					}
					break
				}
				j++
			}
			end := min(j+1, len(q))
			b.WriteString(q[i:end])
			i = end - 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i - 1
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			end := len(q)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(q[i:end])
			i = end - 1
		case c == '$':
			// A dollar quote: $tag$ ... $tag$ (tag empty or an identifier).
			j := i + 1
			for j < len(q) && (q[j] == '_' || q[j] >= 'a' && q[j] <= 'z' || q[j] >= 'A' && q[j] <= 'Z' || j > i+1 && q[j] >= '0' && q[j] <= '9') {
				j++
			}
			if j < len(q) && q[j] == '$' && !(i > 0 && isIdentByte(q[i-1])) {
				tag := q[i : j+1]
				k := strings.Index(q[j+1:], tag)
				end := len(q)
				if k >= 0 {
					end = j + 1 + k + len(tag)
				}
				b.WriteString(q[i:end])
				i = end - 1
				continue
			}
			b.WriteByte(c)
		case c == '?' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			// SQLite's numbered ?NNN is PostgreSQL's $NNN.
			b.WriteByte('$')
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Backend is "sqlite" or "postgres".
func (s *Store) Backend() string { return s.d.name }

// insertMessages is the INSERT of n transcript messages (1 ≤ n ≤
// insertChunk): insertMessage's row of values repeated.
func (d *dialect) insertMessages(n int) string { return d.insertN[n] }

func init() {
	for _, d := range []*dialect{sqliteDialect, postgresDialect} {
		i := strings.LastIndex(d.insertMessage, "VALUES")
		row := strings.TrimSpace(d.insertMessage[i+len("VALUES"):])
		d.insertN = make([]string, insertChunk+1)
		for n := 1; n <= insertChunk; n++ {
			d.insertN[n] = d.insertMessage + strings.Repeat(", "+row, n-1)
		}
	}
}
