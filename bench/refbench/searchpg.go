package main

// -search-pg: sessions_search through the store on PostgreSQL beside
// SQLite, on the same corpus (seedTo, corpus seed 3) and the same query
// mix, the queries of both backends interleaved so a change in machine
// load hits both alike. It replaces the usual run (no reference server,
// no start-up or round-trip section).

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sessionplane/sessionplane/internal/benchpg"
	"github.com/sessionplane/sessionplane/runtime/store"
)

var (
	flagSearchPG   = flag.String("search-pg", "", "PostgreSQL server URL (postgres://...): measure sessionplane's search on a fresh schema there beside SQLite at the -search sizes (only this; the schema is dropped after)")
	flagSearchDir  = flag.String("search-dir", "", "with -search-pg: directory for the SQLite database (default: a temporary directory, removed after)")
	flagSearchRuns = flag.Int("search-runs", 3, "with -search-pg: timed passes at each size (each -queries searches per backend); the medians of the passes are reported")
)

// backendDB is one store under test.
type backendDB struct {
	name string
	s    *store.Store
	sd   *seeder
	seed time.Duration // cumulative seeding time
	size func() int64  // bytes on disk (data, indexes, WAL)
}

// searchPGBench seeds an SQLite store and a PostgreSQL one through sizes
// and at each size times -search-runs interleaved passes of queries
// searches on each.
func searchPGBench(sizes []int, queries, runs int) error {
	// Interrupted, the run still drops its schema and removes its file.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	machine()
	dir := *flagSearchDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "refbench-pg-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, fmt.Sprintf("search-%d.db", os.Getpid()))
	defer os.Remove(path)
	defer os.Remove(path + "-wal")
	defer os.Remove(path + "-shm")
	lite, err := store.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	defer lite.Close()
	dsn, schema, drop, err := benchpg.Schema(ctx, *flagSearchPG, "refbench", "refbench-search")
	if err != nil {
		return err
	}
	defer func() {
		if err := drop(); err != nil {
			fmt.Fprintf(os.Stderr, "refbench: drop schema %s: %v\n", schema, err)
		}
	}()
	pg, err := store.Open(ctx, dsn, nil)
	if err != nil {
		return err
	}
	defer pg.Close()
	var pgVersion string
	_ = pg.DB().QueryRowContext(ctx, "SHOW server_version").Scan(&pgVersion)
	fmt.Printf("PostgreSQL %s, schema %s; SQLite %s\n", pgVersion, schema, path)

	dbs := []*backendDB{
		{name: "sqlite", s: lite, sd: newSeeder(), size: func() int64 { return fileSize(path) + fileSize(path+"-wal") }},
		{name: "postgres", s: pg, sd: newSeeder(), size: func() int64 {
			var n int64
			_ = pg.DB().QueryRowContext(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
				JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'`).Scan(&n)
			return n
		}},
	}
	mix := searchQueries()
	type row struct {
		size                 int
		name                 string
		seed                 time.Duration
		rate                 float64
		bytes                int64
		p50, p95, p99, max   []time.Duration // one per pass
		perQuery             map[string][]time.Duration
		hits                 map[string]int
		seedLoad, searchLoad float64
		vacuum               time.Duration
		cpuGo, cpuPG         time.Duration // CPU per search: this process (store, ranking, driver) and the PG backends
	}
	var rows []*row
	for _, size := range sizes {
		byName := map[string]*row{}
		for _, db := range dbs {
			r := &row{size: size, name: db.name, perQuery: map[string][]time.Duration{}, hits: map[string]int{}, seedLoad: benchpg.Load1()}
			fmt.Printf("\n%s: seeding to %d messages (sessions of 100, one AppendMessages transaction each), load %.2f...\n", db.name, size, r.seedLoad)
			t0 := time.Now()
			last := t0
			err := db.sd.seedTo(ctx, db.s, size, func(n int) {
				if n%100_000 == 0 {
					now := time.Now()
					fmt.Printf("  %8d messages  %6.1fs (this 100k: %5.1fs, load %.2f)\n", n, (db.seed + now.Sub(t0)).Seconds(), now.Sub(last).Seconds(), benchpg.Load1())
					last = now
				}
			})
			if err != nil {
				return fmt.Errorf("%s: seeding: %w", db.name, err)
			}
			db.seed += time.Since(t0)
			if db.name == "postgres" {
				// What autovacuum would do soon after a bulk load: flush
				// the GIN pending list and give the planner statistics.
				t0 := time.Now()
				if _, err := pg.DB().ExecContext(ctx, "VACUUM ANALYZE messages"); err != nil {
					return fmt.Errorf("postgres: VACUUM ANALYZE: %w", err)
				}
				r.vacuum = time.Since(t0)
				fmt.Printf("  VACUUM ANALYZE messages: %.1fs\n", r.vacuum.Seconds())
			}
			r.seed, r.rate, r.bytes = db.seed, float64(size)/db.seed.Seconds(), db.size()
			byName[db.name] = r
			rows = append(rows, r)
		}
		search := func(db *backendDB, q string) (time.Duration, int, error) {
			t0 := time.Now()
			n := 0
			err := db.s.Search(ctx, store.SearchQuery{Query: q}, func(store.Hit) bool { n++; return n < 5 })
			return time.Since(t0), n, err
		}
		// A warm-up pass on each (page cache, statement cache, document
		// counts), then the timed passes, backends alternating per query
		// and the order flipped every pass.
		for _, q := range mix {
			for _, db := range dbs {
				_, n, err := search(db, q)
				if err != nil {
					return fmt.Errorf("%s: search %q: %w", db.name, q, err)
				}
				byName[db.name].hits[q] = n
			}
		}
		for _, q := range mix {
			if a, b := byName["sqlite"].hits[q], byName["postgres"].hits[q]; a != b {
				return fmt.Errorf("search %q at %d messages: sqlite found %d hits, postgres %d (the backends disagree)", q, size, a, b)
			}
		}
		for pass := 0; pass < runs; pass++ {
			load := benchpg.Load1()
			lat := map[string][]time.Duration{}
			for i := 0; i < queries; i++ {
				q := mix[i%len(mix)]
				order := dbs
				if (i+pass)%2 == 1 {
					order = []*backendDB{dbs[1], dbs[0]}
				}
				for _, db := range order {
					d, _, err := search(db, q)
					if err != nil {
						return fmt.Errorf("%s: search %q: %w", db.name, q, err)
					}
					lat[db.name] = append(lat[db.name], d)
					byName[db.name].perQuery[q] = append(byName[db.name].perQuery[q], d)
				}
			}
			for _, db := range dbs {
				r := byName[db.name]
				s := sorted(lat[db.name])
				r.p50 = append(r.p50, s[len(s)/2])
				r.p95 = append(r.p95, s[len(s)*95/100])
				r.p99 = append(r.p99, s[len(s)*99/100])
				r.max = append(r.max, s[len(s)-1])
				r.searchLoad += load / float64(runs)
				fmt.Printf("  pass %d at %d, %s: p50 %.2f ms, p95 %.2f ms, p99 %.2f ms (load %.2f)\n", pass+1, size, db.name, ms(s[len(s)/2]), ms(s[len(s)*95/100]), ms(s[len(s)*99/100]), load)
			}
		}
		// CPU time per search, one backend at a time (so each process's
		// CPU can be charged to one backend): the work, whatever the load.
		for _, db := range dbs {
			n := len(mix) * max(1, queries/len(mix)/2)
			go0, _ := benchpg.ProcCPU(os.Getpid())
			pg0 := backendsCPU(ctx)
			for i := 0; i < n; i++ {
				if _, _, err := search(db, mix[i%len(mix)]); err != nil {
					return err
				}
			}
			go1, _ := benchpg.ProcCPU(os.Getpid())
			r := byName[db.name]
			r.cpuGo = (go1 - go0) / time.Duration(n)
			if db.name == "postgres" {
				r.cpuPG = (backendsCPU(ctx) - pg0) / time.Duration(n)
			}
			fmt.Printf("  CPU per search at %d, %s (%d searches alone): %.2f ms here + %.2f ms PostgreSQL backends\n", size, db.name, n, ms(r.cpuGo), ms(r.cpuPG))
		}
	}

	fmt.Printf("\n## sessions_search through the store on SQLite and PostgreSQL (runtime/store Search, first 5 hits), BenchmarkSearch100k's corpus and query mix\n\n")
	fmt.Printf("%d passes of %d searches per backend and size, backends interleaved query by query; medians of the passes (min–max in brackets)\n\n", runs, queries)
	fmt.Printf("%-9s %-9s %8s %10s %9s %20s %20s %20s %8s %11s %6s %6s\n", "messages", "backend", "seed-s", "seed-msg/s", "db-MB", "p50-ms", "p95-ms", "p99-ms", "max-ms", "CPUms/srch", "load", "seedld")
	rng := func(d []time.Duration) string {
		s := sorted(d)
		return fmt.Sprintf("%.2f [%.2f–%.2f]", ms(s[len(s)/2]), ms(s[0]), ms(s[len(s)-1]))
	}
	for _, r := range rows {
		fmt.Printf("%-9d %-9s %8.1f %10.0f %9.1f %20s %20s %20s %8.2f %11.2f %6.2f %6.2f\n", r.size, r.name, r.seed.Seconds(), r.rate, float64(r.bytes)/(1<<20),
			rng(r.p50), rng(r.p95), rng(r.p99), ms(sorted(r.max)[len(r.max)-1]), ms(r.cpuGo+r.cpuPG), r.searchLoad, r.seedLoad)
	}
	for _, size := range sizes {
		fmt.Printf("\nper query at %d messages (all passes; p95 ms):\n  %-38s %6s %10s %10s %8s\n", size, "query", "hits", "sqlite", "postgres", "pg÷lite")
		var lite, pgr *row
		for _, r := range rows {
			if r.size == size && r.name == "sqlite" {
				lite = r
			}
			if r.size == size && r.name == "postgres" {
				pgr = r
			}
		}
		for _, q := range mix {
			a, b := p95(lite.perQuery[q]), p95(pgr.perQuery[q])
			fmt.Printf("  %-38s %6d %10.2f %10.2f %7.2fx\n", q, lite.hits[q], ms(a), ms(b), ms(b)/ms(a))
		}
	}
	fmt.Println()
	for _, r := range rows {
		p := sorted(r.p95)[len(r.p95)/2]
		v := "MET"
		if p > 20*time.Millisecond {
			v = "NOT MET"
		}
		fmt.Printf("target sessions_search p95 ≤ 20 ms at %d messages on %s: %.2f ms (median of %d passes): %s\n", r.size, r.name, ms(p), runs, v)
	}
	return nil
}

// searchSizes parses -search.
func searchSizes() ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(*flagSearch, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 100 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
			return nil, fmt.Errorf("-search %q: want ascending message counts", *flagSearch)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// backendsCPU is the CPU time of the PostgreSQL backends serving this
// program's store (application_name refbench-search).
func backendsCPU(ctx context.Context) time.Duration {
	pids, err := benchpg.BackendPIDs(ctx, *flagSearchPG, "refbench-search")
	if err != nil {
		return 0
	}
	d, _ := benchpg.CPUSum(pids)
	return d
}
