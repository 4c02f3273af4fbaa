// Package benchpg is what the benchmark programs (bench/multibench,
// bench/refbench) need of a PostgreSQL server and of /proc: a fresh schema
// per run, dropped after it, and the CPU time of processes, so results on a
// busy shared machine can be given as CPU time per operation.
package benchpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Schema creates a schema named prefix_<random> on the server at base (a
// postgres:// URL) and returns base with search_path set to it and
// application_name set to app (so the server's backends of this run can
// be told from everyone else's in pg_stat_activity), the schema's name,
// and drop, which removes the schema with everything in it.
func Schema(ctx context.Context, base, prefix, app string) (dsn, schema string, drop func() error, err error) {
	u, err := url.Parse(base)
	if err != nil || !(u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return "", "", nil, fmt.Errorf("benchpg: %q is not a postgres:// URL (write postgres://user@host:port/database?sslmode=disable)", base)
	}
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", nil, err
	}
	schema = prefix + "_" + hex.EncodeToString(b[:])
	if err := exec(ctx, base, "CREATE SCHEMA "+schema); err != nil {
		return "", "", nil, fmt.Errorf("benchpg: create schema %s: %w", schema, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	if app != "" {
		q.Set("application_name", app)
	}
	u.RawQuery = q.Encode()
	drop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return exec(ctx, base, "DROP SCHEMA "+schema+" CASCADE")
	}
	return u.String(), schema, drop, nil
}

func exec(ctx context.Context, base, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// BackendPIDs returns the process ids of the server's backends whose
// application_name is app.
func BackendPIDs(ctx context.Context, base, app string) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	return pids, rows.Err()
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on
// every Linux architecture Go supports).
const clockTick = 100

// ProcCPU returns the user+system CPU time process pid has used so far,
// from /proc/<pid>/stat (fields 14 and 15).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("benchpg: /proc/%d/stat: no ')' in %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("benchpg: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("benchpg: /proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// CPUSum is the summed ProcCPU of pids; a process that is gone counts 0
// and is reported in missing.
func CPUSum(pids []int) (total time.Duration, missing int) {
	for _, p := range pids {
		d, err := ProcCPU(p)
		if err != nil {
			missing++
			continue
		}
		total += d
	}
	return total, missing
}

// Load1 is the 1-minute load average (0 when /proc/loadavg cannot be read).
func Load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	l, _ := strconv.ParseFloat(f[0], 64)
	return l
}

// ActiveWaits returns, for each active backend whose application_name is
// app, what it is doing: "CPU" when it waits on nothing, else
// "<wait_event_type>:<wait_event>". conn is the sampler's own connection
// (one for all samples: a connection per sample would cost the server a
// backend start each time).
func ActiveWaits(ctx context.Context, conn *pgx.Conn, app string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
		WHERE application_name = $1 AND state = 'active'`, app)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var w string
		if err := rows.Scan(&w); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}
