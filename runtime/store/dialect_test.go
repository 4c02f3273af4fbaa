package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sessionplane/sessionplane/internal/testdb"
)

func TestRebindDollar(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT 1":     "SELECT 1",
		"SELECT ? , ?": "SELECT $1 , $2",
		"UPDATE t SET a = '?', b = ? WHERE c = 'it''s?'": "UPDATE t SET a = '?', b = $1 WHERE c = 'it''s?'",
		`SELECT "we?ird" FROM t WHERE x = ?`:             `SELECT "we?ird" FROM t WHERE x = $1`,
		"SELECT ? -- why?\n, ?":                          "SELECT $1 -- why?\n, $2",
		"SELECT /* ? */ ?":                               "SELECT /* ? */ $1",
		"DO $$ SELECT '?' $$; SELECT ?":                  "DO $$ SELECT '?' $$; SELECT $1",
		"SELECT $tag$ ? $tag$, ?":                        "SELECT $tag$ ? $tag$, $1",
		"UPDATE t SET a = a - ?1, b = ?2, c = ?1":        "UPDATE t SET a = a - $1, b = $2, c = $1",
		"SELECT x$1 FROM t WHERE y = ?":                  "SELECT x$1 FROM t WHERE y = $1",
		"SELECT 'unterminated ?":                         "SELECT 'unterminated ?",
	} {
		if got := rebindDollar(in); got != want {
			t.Errorf("rebindDollar(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPostgresQueryAndLexemesAreLiteral(t *testing.T) {
	if got, want := pgQuery(`Café AND "x" | !y:* it's`), `'cafe' & 'and' & 'x' & 'y' & 'it' & 's'`; got != want {
		t.Errorf("pgQuery = %q, want %q", got, want)
	}
	if got := pgQuery(" -- ;; "); got != "" {
		t.Errorf("pgQuery of no words = %q, want empty", got)
	}
	if got := lexemes(""); got != nil {
		t.Errorf("lexemes of an empty body = %v, want nil (not indexed)", got)
	}
	if got, want := lexemes("Über über UBER a_b"), `'uber' 'a' 'b'`; got != want {
		t.Errorf("lexemes = %v, want %q", got, want)
	}
	long := strings.Repeat("x", pgMaxLexeme+1)
	if got, want := lexemes("short "+long), `'short'`; got != want {
		t.Errorf("lexemes with an over-long word = %v, want %q", got, want)
	}
}

func TestBodySnippetLikeFTS5(t *testing.T) {
	terms := []string{"fox", "dog"}
	if got, want := bodySnippet("The quick brown fox jumps over the lazy dog.", terms), "The quick brown [fox] jumps over the lazy [dog]."; got != want {
		t.Errorf("short body: %q, want %q", got, want)
	}
	body := "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen fox seventeen eighteen nineteen twenty twentyone twentytwo twentythree twentyfour"
	got := bodySnippet(body, terms)
	if !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "…") || !strings.Contains(got, "[fox]") || len(strings.Fields(got)) != snippetWords {
		t.Errorf("long body: %q, want 12 words around [fox] cut on both sides", got)
	}
	got = bodySnippet("Fox "+strings.Repeat("filler ", 30)+"fox dog end", terms)
	if !strings.Contains(got, "[fox]") || !strings.Contains(got, "[dog]") {
		t.Errorf("the window with both words should win: %q", got)
	}
	if got := bodySnippet("Café au lait", []string{"cafe"}); got != "[Café] au lait" {
		t.Errorf("folded match: %q", got)
	}
	if got := bodySnippet("run deploy_now then", []string{"deploy"}); got != "run [deploy]_now then" {
		t.Errorf("a word joined by _: %q, want it marked like FTS5 does", got)
	}
}

// An unreachable PostgreSQL server is named (without the password) with
// what to check.
func TestPostgresUnreachableNamedWithFix(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Open(ctx, "postgres://sp:s3cret@127.0.0.1:1/spdb?sslmode=disable&connect_timeout=5", nil)
	if err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	msg := err.Error()
	if !errors.Is(err, ErrUnreachable) || strings.Contains(msg, "s3cret") || !strings.Contains(msg, "127.0.0.1:1") || !strings.Contains(msg, "check that the server runs") {
		t.Fatalf("err = %v; want ErrUnreachable naming the URL without the password and what to check", err)
	}
}

func TestCheckAndBackupRefusePostgres(t *testing.T) {
	ctx := context.Background()
	if _, err := Check(ctx, "postgres://u:pw@h/db"); err == nil || !strings.Contains(err.Error(), "pg_amcheck") || strings.Contains(err.Error(), ":pw@") {
		t.Errorf("Check(postgres URL) = %v, want a refusal naming pg_amcheck, without the password", err)
	}
	if _, err := Backup(ctx, "postgresql://u:pw@h/db", filepath.Join(t.TempDir(), "b.db")); err == nil || !strings.Contains(err.Error(), "pg_dump") || strings.Contains(err.Error(), ":pw@") {
		t.Errorf("Backup(postgres URL) = %v, want a refusal naming pg_dump, without the password", err)
	}
}

func TestPostgresFaultLeavesCancellationAlone(t *testing.T) {
	s := &Store{d: postgresDialect, path: "postgres://h/db"}
	for _, err := range []error{context.Canceled, context.DeadlineExceeded, fmt.Errorf("query: %w", context.DeadlineExceeded)} {
		if got := s.fault(err); got != err {
			t.Errorf("fault(%v) = %v, want it unchanged", err, got)
		}
	}
	login := &pgconn.PgError{Code: "28P01", Message: "password authentication failed"}
	if got := s.fault(login); !errors.Is(got, ErrUnreachable) || !strings.Contains(got.Error(), "password") {
		t.Errorf("fault(bad login) = %v, want ErrUnreachable naming the password to check", got)
	}
	if got := s.fault(&pgconn.PgError{Code: "25006"}); !errors.Is(got, ErrReadOnly) {
		t.Errorf("fault(read-only transaction) = %v, want ErrReadOnly", got)
	}
}

// A database that does not exist on a reachable server is named with the
// precise fix (createdb), not the generic "check the server" text: the
// server's code inside the connection error decides.
func TestPostgresMissingDatabaseNamedWithCreatedb(t *testing.T) {
	base := os.Getenv(testdb.Env)
	if base == "" {
		t.Skip("needs a PostgreSQL server: set " + testdb.Env + " (CI's PostgreSQL pass does)")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/sessionplane_no_such_db"
	_, err = Open(context.Background(), u.String(), nil)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "createdb") {
		t.Fatalf("open of a missing database: %v; want ErrUnreachable naming createdb", err)
	}
}
