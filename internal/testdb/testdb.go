// Package testdb hands each test a fresh, empty database on the backend the
// suite runs on: an SQLite file in t.TempDir() by default, or, when
// SESSIONPLANE_TEST_POSTGRES holds a postgres:// URL, a new schema on that
// server (dropped when the test ends). The returned string is what
// store.Open and `sessionplane --db` take, so the same test runs on both.
//
// Tests about SQLite files themselves (damage, backup, WAL size, file
// permissions) keep using a path of their own and run on SQLite always.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the variable that selects PostgreSQL for the suite.
const Env = "SESSIONPLANE_TEST_POSTGRES"

// Postgres reports whether the suite runs on PostgreSQL.
func Postgres() bool { return os.Getenv(Env) != "" }

// Backend is "postgres" or "sqlite", for test names and messages.
func Backend() string {
	if Postgres() {
		return "postgres"
	}
	return "sqlite"
}

// DSN returns a new empty database for t. name tells several databases of
// one test apart (on SQLite it is the file name; "" means "sessionplane.db").
// Calling DSN twice with the same name in one test returns two different
// databases; to open one database twice, call it once and reuse the string.
func DSN(t testing.TB, name string) string {
	t.Helper()
	if name == "" {
		name = "sessionplane.db"
	}
	base := os.Getenv(Env)
	if base == "" {
		return filepath.Join(t.TempDir(), name)
	}
	return Schema(t, base)
}

// Schema creates a schema with a random name on the PostgreSQL server at
// base and returns base with search_path set to it; the schema is dropped
// with everything in it when t ends.
func Schema(t testing.TB, base string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testdb: connect to %s=%s: %v (start a server, e.g. `bash scripts/pg-test-server start`, or unset %s to test on SQLite)", Env, base, err, Env)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("testdb: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("testdb: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("testdb: drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(t, base, schema)
}

func withSearchPath(t testing.TB, base, schema string) string {
	u, err := url.Parse(base)
	if err != nil || !(strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://")) {
		t.Fatalf("testdb: %s must be a postgres:// URL, got %q", Env, base)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
