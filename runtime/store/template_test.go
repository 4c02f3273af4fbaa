package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite template/sqlite-empty.sqlite.gz from the migrations")

// A new SQLite file made from the template holds exactly what the
// migrations make (schema, every table's rows, the pragmas kept in the
// file), and opening it applies nothing.
func TestSQLiteTemplate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	migrated, err := Open(ctx, filepath.Join(dir, "migrated.db"), &Options{noTemplate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer migrated.Close()
	want := dumpSQLite(t, migrated.DB())
	if *update {
		if _, err := migrated.DB().ExecContext(ctx, "UPDATE schema_migrations SET applied_at = 0"); err != nil {
			t.Fatal(err)
		}
		if _, err := migrated.DB().ExecContext(ctx, "VACUUM"); err != nil {
			t.Fatal(err)
		}
		migrated.Close()
		raw, err := os.ReadFile(filepath.Join(dir, "migrated.db"))
		if err != nil {
			t.Fatal(err)
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("template", "sqlite-empty.sqlite.gz"), gz.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("template: %d bytes (%d gzipped)", len(raw), gz.Len())
		return
	}
	path := filepath.Join(dir, "new.db")
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if w := s.WriteStats().Waited; w != 0 {
		t.Fatalf("a new file from the template: %d waited writes at open (migrations applied), want 0: run go test ./runtime/store -run TestSQLiteTemplate -update", w)
	}
	if got := dumpSQLite(t, s.DB()); got != want {
		t.Fatalf("a file from the template differs from a migrated one: run go test ./runtime/store -run TestSQLiteTemplate -update\n got:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file's mode: %v %v, want 0600", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".sessionplane-new-*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// The file is an ordinary database: it takes writes and keeps them.
	if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:main"}); err != nil {
		t.Fatal(err)
	}
}

// An existing file, or a journal left without its database, is never
// replaced by the template.
func TestSQLiteTemplateNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"x.db", "y.db-wal", "z.db-journal"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, db := range []string{"x.db", "y.db", "z.db"} {
		if createFromTemplate(filepath.Join(dir, db)) {
			t.Errorf("%s: made from the template although it or its journal exists", db)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x.db")); string(b) != "keep" {
		t.Fatalf("x.db changed: %q", b)
	}
	if !createFromTemplate(filepath.Join(dir, "new.db")) {
		t.Fatal("a new name was not made from the template")
	}
}

// dumpSQLite is the schema, every table's rows (schema_migrations without
// applied_at) and the file's pragmas, as text.
func dumpSQLite(t *testing.T, db *sql.DB) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"page_size", "journal_mode", "auto_vacuum", "encoding", "user_version", "application_id"} {
		var v string
		if err := db.QueryRow("PRAGMA " + p).Scan(&v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "pragma %s = %s\n", p, v)
	}
	rows, err := db.Query("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var typ, name, tbl, q string
		if err := rows.Scan(&typ, &name, &tbl, &q); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s on %s: %s\n", typ, name, tbl, q)
		if typ == "table" {
			tables = append(tables, name)
		}
	}
	rows.Close()
	for _, tbl := range tables {
		q := `SELECT * FROM "` + tbl + `"`
		if tbl == "schema_migrations" {
			q = "SELECT version, name FROM schema_migrations"
		}
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", tbl, err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%q", vals))
		}
		rows.Close()
		slices.Sort(lines)
		fmt.Fprintf(&b, "rows of %s %v: %d\n%s\n", tbl, cols, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}
