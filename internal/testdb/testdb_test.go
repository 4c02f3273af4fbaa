package testdb

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestDSNIsFreshAndIsolated checks that two DSNs of one test are two
// databases: a table made in one is not seen in the other.
func TestDSNIsFreshAndIsolated(t *testing.T) {
	a, b := DSN(t, "a.db"), DSN(t, "b.db")
	if a == b {
		t.Fatalf("two calls returned one database: %s", a)
	}
	if !Postgres() {
		if !strings.HasSuffix(a, "a.db") {
			t.Fatalf("sqlite DSN %q does not end in the name", a)
		}
		return
	}
	ctx := context.Background()
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE only_here (x int)"); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'only_here'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("table of one DSN is visible in the other")
	}
}
