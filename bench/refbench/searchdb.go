package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

var (
	flagSearchDB    = flag.String("searchdb", "", "measure sessions_search on this already seeded database (search.db kept by an earlier run with -keep) and exit: wall and CPU time per query")
	flagSearchProf  = flag.String("searchprof", "", "with -searchdb: write a CPU profile of the timed queries to this file")
	flagSearchWrite = flag.Bool("searchwrite", false, "with -searchdb: commit one small write before each query (a session's updated_at), as a server records each call: SQLite then drops every connection's page cache, so this times search on a store that is being written")
)

// threadCPU is the CPU time of the calling OS thread so far.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is the CPU time of the whole process so far (every thread:
// the search, the Go runtime, the writer of -searchwrite).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// searchDB times the query mix on an existing corpus. Besides wall time it
// reports each query's CPU time on its own OS thread (the search runs on
// the calling goroutine: the SQLite driver is Go), which a loaded machine
// inflates far less than wall time: on a shared 2-core machine it is the
// figure that says whether a change made the search cheaper.
func searchDB(path string, queries int) error {
	ctx := context.Background()
	s, err := store.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	var n int
	if err := s.DB().QueryRow(`SELECT count(*) FROM messages`).Scan(&n); err != nil {
		return err
	}
	if *flagSearchWrite {
		// A server's pool has several connections (calls run at once):
		// open a second one, so the writer's commits land on another
		// connection than the searches, as they do in a server.
		c1, err1 := s.DB().Conn(ctx)
		c2, err2 := s.DB().Conn(ctx)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("open two connections: %v %v", err1, err2)
		}
		c1.Close()
		c2.Close()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mix := searchQueries()
	one := func(q string) (wall, cpu time.Duration, err error) {
		hits := 0
		c0, t0 := threadCPU(), time.Now()
		err = s.Search(ctx, store.SearchQuery{Query: q}, func(store.Hit) bool { hits++; return hits < 5 })
		return time.Since(t0), threadCPU() - c0, err
	}
	for _, q := range mix { // warm-up pass
		if _, _, err := one(q); err != nil {
			return fmt.Errorf("search %q: %w", q, err)
		}
	}
	if *flagSearchProf != "" {
		f, err := os.Create(*flagSearchProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	load0 := loadavg()
	proc0 := processCPU()
	var wall, cpu []time.Duration
	perQ := map[string][]time.Duration{}
	for i := 0; i < queries; i++ {
		q := mix[i%len(mix)]
		if *flagSearchWrite {
			// Untimed: the WAL changes, so the next read transaction of
			// every connection starts with an empty page cache.
			// Through the store's writer, as a server writes: on another
			// connection than the search's once the pool has two.
			if err := s.Tx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `UPDATE sessions SET updated_at = updated_at + 1 WHERE key = (SELECT max(key) FROM sessions)`)
				return err
			}); err != nil {
				return fmt.Errorf("write between searches: %w", err)
			}
		}
		w, c, err := one(q)
		if err != nil {
			return fmt.Errorf("search %q: %w", q, err)
		}
		wall, cpu = append(wall, w), append(cpu, c)
		perQ[q] = append(perQ[q], c)
	}
	proc := processCPU() - proc0
	fmt.Printf("sessions_search on %s (%d messages), %d queries of the mix after one warm-up pass, a write before each: %v; load average %.2f → %.2f\n", path, n, queries, *flagSearchWrite, load0, loadavg())
	fmt.Printf("%-10s %9s %9s %9s\n", "", "p50-ms", "p95-ms", "mean-ms")
	fmt.Printf("%-10s %9.2f %9.2f %9.2f\n", "wall", ms(p50(wall)), ms(p95(wall)), ms(mean(wall)))
	fmt.Printf("%-10s %9.2f %9.2f %9.2f\n", "thread-cpu", ms(p50(cpu)), ms(p95(cpu)), ms(mean(cpu)))
	// The thread's CPU time advances by scheduler ticks (4 ms here), so its
	// p50/p95 are coarse; the process's CPU over the whole loop, per query,
	// is a precise mean (it includes the untimed writes of -searchwrite).
	fmt.Printf("process CPU per query (whole loop): %.2f ms\n", ms(proc/time.Duration(queries)))
	fmt.Printf("\nper query, thread CPU:\n  %-36s %9s %9s\n", "query", "p50-ms", "p95-ms")
	for _, q := range mix {
		fmt.Printf("  %-36s %9.2f %9.2f\n", q, ms(p50(perQ[q])), ms(p95(perQ[q])))
	}
	return nil
}
