package benchpg

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

func TestProcCPUReadsThisProcess(t *testing.T) {
	before, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel's tick-granular counter moves.
	x := 0
	for i := 0; ; i++ {
		x += i * i
		if i%1_000_000 == 0 {
			after, err := ProcCPU(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if after < before {
				t.Fatalf("CPU time went back: %v then %v", before, after)
			}
			if after > before {
				break
			}
		}
	}
	_ = x
	if _, missing := CPUSum([]int{os.Getpid(), -1}); missing != 1 {
		t.Fatalf("CPUSum of this process and pid -1: missing = %d, want 1", missing)
	}
}

func TestSchemaCreatesAndDrops(t *testing.T) {
	base := os.Getenv(testdb.Env)
	if base == "" {
		t.Skipf("%s is not set: this test needs a PostgreSQL server (the SQLite suite has no use for benchpg.Schema)", testdb.Env)
	}
	ctx := context.Background()
	dsn, schema, drop, err := Schema(ctx, base, "benchpgtest", "benchpg-test")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var cur, app string
	if err := conn.QueryRow(ctx, "SELECT current_schema(), current_setting('application_name')").Scan(&cur, &app); err != nil {
		t.Fatal(err)
	}
	pids, err := BackendPIDs(ctx, base, "benchpg-test")
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur != schema || app != "benchpg-test" || len(pids) != 1 {
		t.Fatalf("schema %q app %q backends %v; want %q, benchpg-test, one backend", cur, app, pids, schema)
	}
	if err := drop(); err != nil {
		t.Fatal(err)
	}
	var n int
	c2, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	if err := c2.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n); err != nil || n != 0 {
		t.Fatalf("schema %s after drop: count %d, err %v", schema, n, err)
	}
}

func TestSchemaRejectsANonPostgresURL(t *testing.T) {
	_, _, _, err := Schema(context.Background(), "/tmp/x.db", "p", "")
	if err == nil || !strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("Schema of a file path: err %v, want one naming the postgres:// form", err)
	}
}
