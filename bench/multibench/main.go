// Command multibench measures sessionplane with 1, 2 and 3 server processes
// on one database, SQLite file or PostgreSQL, under one fixed workload
// (issue 14 item 6):
//
//   - turns: -clients concurrent MCP clients, spread round-robin over the
//     instances, each making -turns waited sessions_send calls to a session
//     of its own (agent:main:bench-c<k>); the scripted model answers
//     "bench reply: <task>" after -delay. The ack is the reply, so its
//     latency is a whole turn.
//   - spawns: the same clients each making -spawns sessions_spawn calls
//     (acknowledged at once, the child's one scripted turn runs in the
//     background of the instance that took the call).
//
// Throughput counts runs that ENDED, read from the database (runs.ended_at,
// not acknowledged calls): completed runs ÷ (first call → last ended_at).
// At the end of each phase the database must hold exactly the expected
// runs, all ended ok, and exactly one reply per task (a run executed twice
// would reply twice), or the program fails.
//
// CPU time comes from /proc: the server processes' (user+system) and, on
// PostgreSQL, that of the server backends of this run (found by the
// application_name multibench-<schema> the instances connect with; the
// server's shared background processes are not counted), so a noisy
// machine still gives comparable CPU time per operation. Retries of whole
// write transactions (SQLITE_BUSY, or PostgreSQL 40001/40P01 under
// SERIALIZABLE) are counted in the servers' debug logs; on PostgreSQL,
// pg_stat_activity is sampled every 100 ms for what the run's active
// backends wait on.
//
// Every (backend, instances) configuration runs -runs times, interleaved
// (rep 1 of every configuration, then rep 2, ...), each on a fresh database
// (an SQLite file in a temporary directory; a new schema on the -pg server,
// dropped after). The table gives medians over the runs.
//
//	go run ./bench/multibench -pg 'postgres://postgres@127.0.0.1:5433/sptest?sslmode=disable'
//	go run ./bench/multibench -backends sqlite -instances 1,2 -runs 1
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionplane/sessionplane/internal/benchpg"
	"github.com/sessionplane/sessionplane/runtime/store"
)

var (
	flagPG        = flag.String("pg", "", "PostgreSQL server URL (postgres://...); each run gets a fresh schema there, dropped after")
	flagBackends  = flag.String("backends", "sqlite,postgres", "backends to measure (postgres needs -pg)")
	flagInstances = flag.String("instances", "1,2,3", "numbers of server processes on one database")
	flagClients   = flag.Int("clients", 8, "concurrent MCP clients, spread round-robin over the instances")
	flagTurns     = flag.Int("turns", 25, "waited sessions_send turns per client")
	flagSpawns    = flag.Int("spawns", 25, "sessions_spawn calls per client")
	flagDelay     = flag.Duration("delay", 10*time.Millisecond, "the scripted model's delay per turn")
	flagLane      = flag.Int("lane", 64, "[agents.defaults.subagents] max_concurrent of each instance")
	flagRuns      = flag.Int("runs", 3, "runs of every configuration (interleaved); the table shows medians")
	flagKeep      = flag.Bool("keep", false, "keep the temporary directory (binary, SQLite files, server logs)")
	flagDrain     = flag.Duration("drain", 5*time.Minute, "longest wait, after the last call, for every run of a phase to end (then the run fails)")
)

func main() {
	flag.Parse()
	// Interrupted, the run still drops its schema and ends its servers
	// (the deferred clean-up runs once the calls in flight return).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "multibench:", err)
		os.Exit(1)
	}
}

// config is one (backend, instances) pair; reps holds each run's result.
type config struct {
	backend string
	n       int
	reps    []*result
}

type result struct {
	turns, spawns *phase
	load          float64
	tables        string // PostgreSQL: pg_stat_user_tables after the run
}

func run(ctx context.Context) error {
	backends := strings.Split(*flagBackends, ",")
	var ns []int
	for _, f := range strings.Split(*flagInstances, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 16 {
			return fmt.Errorf("-instances %q: want numbers of processes between 1 and 16, e.g. 1,2,3", *flagInstances)
		}
		ns = append(ns, n)
	}
	for _, b := range backends {
		switch b {
		case store.BackendSQLite:
		case store.BackendPostgres:
			if *flagPG == "" {
				return fmt.Errorf("-backends %q: postgres needs -pg postgres://user@host:port/database?sslmode=disable", *flagBackends)
			}
		default:
			return fmt.Errorf("-backends %q: want sqlite and/or postgres", *flagBackends)
		}
	}
	if *flagClients < 1 || *flagTurns < 1 || *flagSpawns < 1 || *flagRuns < 1 {
		return fmt.Errorf("-clients, -turns, -spawns and -runs must be at least 1")
	}
	if *flagClients**flagSpawns > 1000 {
		return fmt.Errorf("-clients × -spawns = %d: at most 1000 (every spawn comes from one session, and max_children_per_agent is at most 1000)", *flagClients**flagSpawns)
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "multibench-")
	if err != nil {
		return err
	}
	if *flagKeep {
		fmt.Println("temporary directory:", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	bin := filepath.Join(tmp, "sessionplane")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	cfg, err := writeConfig(tmp, *flagDelay, *flagLane)
	if err != nil {
		return err
	}
	fmt.Printf("%d clients; per client %d waited sessions_send turns, then %d sessions_spawn; scripted model delay %s; lane %d per instance; %d runs of each configuration, interleaved\n",
		*flagClients, *flagTurns, *flagSpawns, *flagDelay, *flagLane, *flagRuns)
	fmt.Printf("machine: %d CPUs shared with other work; load average at the start %.2f\n", nproc(), benchpg.Load1())

	var configs []*config
	for _, n := range ns {
		for _, b := range backends {
			configs = append(configs, &config{backend: b, n: n})
		}
	}
	for rep := 0; rep < *flagRuns; rep++ {
		for _, c := range configs {
			dir := filepath.Join(tmp, fmt.Sprintf("%s-%d-%d", c.backend, c.n, rep))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			r, err := runOne(ctx, bin, cfg, dir, c.backend, c.n)
			if err != nil {
				return fmt.Errorf("%s, %d instances, run %d: %w", c.backend, c.n, rep+1, err)
			}
			c.reps = append(c.reps, r)
			fmt.Printf("run %d %-8s x%d: %7.1f turns/s (p50 %.1f ms, p95 %.1f ms, %.2f ms CPU/turn, %d retries)  %7.1f spawns/s (ack p50 %.1f ms, p95 %.1f ms, %.2f ms CPU/spawn, %d retries)  load %.2f\n",
				rep+1, c.backend, c.n, r.turns.opsPerSec(), ms(pct(r.turns.acks, 50)), ms(pct(r.turns.acks, 95)), ms(r.turns.cpuPerOp()), r.turns.retries,
				r.spawns.opsPerSec(), ms(pct(r.spawns.acks, 50)), ms(pct(r.spawns.acks, 95)), ms(r.spawns.cpuPerOp()), r.spawns.retries, r.load)
		}
	}
	report(configs)
	return nil
}

// runOne measures one configuration on a fresh database.
func runOne(ctx context.Context, bin, cfg, dir, backend string, n int) (*result, error) {
	var dsn, app string
	if backend == store.BackendPostgres {
		d, schema, drop, err := benchpg.Schema(ctx, *flagPG, "multibench", "")
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := drop(); err != nil {
				fmt.Fprintf(os.Stderr, "multibench: drop schema %s: %v\n", schema, err)
			}
		}()
		app = "multibench-" + schema
		dsn = withParam(d, "application_name", app)
	} else {
		dsn = filepath.Join(dir, "bench.db")
	}
	// The reader: migrates the fresh database before the servers start
	// (so they do not race to), and reads the runs back.
	rdsn := dsn
	if app != "" {
		rdsn = withParam(dsn, "application_name", "multibench-reader")
	}
	db, err := store.Open(ctx, rdsn, nil)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	hermetic := []string{"SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME=" + dir, "XDG_DATA_HOME=" + dir}
	ins := make([]*instance, 0, n)
	defer func() {
		for _, in := range ins {
			in.close()
		}
	}()
	for i := 0; i < n; i++ {
		in, err := startInstance(ctx, bin, cfg, dsn, filepath.Join(dir, fmt.Sprintf("server%d.log", i)), hermetic)
		if err != nil {
			return nil, fmt.Errorf("instance %d: %w", i, err)
		}
		ins = append(ins, in)
	}
	r := &result{load: benchpg.Load1()}
	total := *flagClients
	r.turns, err = measure(ctx, db, ins, app, func(ctx context.Context, start time.Time, p *phase) error {
		acks, err := drive(ctx, ins, total, *flagTurns, sendTurn)
		p.acks = acks
		if err != nil {
			return err
		}
		want := total * *flagTurns
		if err := waitEnded(ctx, db, "send", want, *flagDrain); err != nil {
			return err
		}
		return check(ctx, db, "send", "bench reply: turn ", want, *flagTurns, start, p)
	})
	if err != nil {
		return nil, fmt.Errorf("turns: %w", err)
	}
	r.spawns, err = measure(ctx, db, ins, app, func(ctx context.Context, start time.Time, p *phase) error {
		acks, err := drive(ctx, ins, total, *flagSpawns, spawn)
		p.acks = acks
		if err != nil {
			return err
		}
		want := total * *flagSpawns
		if err := waitEnded(ctx, db, "spawn", want, *flagDrain); err != nil {
			return err
		}
		return check(ctx, db, "spawn", "bench reply: spawn ", want, 1, start, p)
	})
	if err != nil {
		return nil, fmt.Errorf("spawns: %w", err)
	}
	if app != "" {
		// The servers' backends report their table statistics when they
		// exit: close the instances first.
		for _, in := range ins {
			in.close()
		}
		ins = nil
		r.tables = tableStats(ctx, db)
	}
	return r, nil
}

// tableStats summarizes pg_stat_user_tables of the run's schema: the
// tables read most by sequential scans, and the scan counts, which show a
// query the indexes do not serve.
func tableStats(ctx context.Context, db *store.Store) string {
	rows, err := db.DB().QueryContext(ctx, `SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_tup_ins + n_tup_upd + n_tup_del
		FROM pg_stat_user_tables WHERE schemaname = current_schema() ORDER BY seq_tup_read DESC, seq_scan DESC LIMIT 4`)
	if err != nil {
		return "pg_stat_user_tables: " + err.Error()
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var name string
		var seq, seqRead, idx, writes int64
		if err := rows.Scan(&name, &seq, &seqRead, &idx, &writes); err != nil {
			return err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s seq_scan %d (rows read %d) idx_scan %d writes %d", name, seq, seqRead, idx, writes))
	}
	return strings.Join(parts, "; ")
}

// measure runs one phase between CPU and retry readings, sampling
// pg_stat_activity meanwhile on PostgreSQL.
func measure(ctx context.Context, db *store.Store, ins []*instance, app string, body func(ctx context.Context, start time.Time, p *phase) error) (*phase, error) {
	p := &phase{waits: map[string]int{}}
	cpu0 := make([]time.Duration, len(ins))
	retry0 := make([]int, len(ins))
	for i, in := range ins {
		cpu0[i], retry0[i] = in.cpu(), retries(in.stderr)
	}
	pg0 := pgCPU(ctx, app)
	var wg sync.WaitGroup
	sctx, stop := context.WithCancel(ctx)
	if app != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sampleWaits(sctx, app, p.waits)
		}()
	}
	start := time.Now()
	err := body(ctx, start, p)
	stop()
	wg.Wait()
	for i, in := range ins {
		p.serverCPU += in.cpu() - cpu0[i]
		p.retries += retries(in.stderr) - retry0[i]
	}
	for pid, d := range pgCPU(ctx, app) {
		p.pgCPU += d - pg0[pid]
	}
	return p, err
}

// pgCPU is the CPU time of each backend of the run (none on SQLite).
func pgCPU(ctx context.Context, app string) map[int]time.Duration {
	out := map[int]time.Duration{}
	if app == "" {
		return out
	}
	pids, err := benchpg.BackendPIDs(ctx, *flagPG, app)
	if err != nil {
		fmt.Fprintln(os.Stderr, "multibench: pg_stat_activity:", err)
		return out
	}
	for _, pid := range pids {
		if d, err := benchpg.ProcCPU(pid); err == nil {
			out[pid] = d
		}
	}
	return out
}

// sampleWaits counts, every 100 ms until ctx ends, what the run's active
// backends are doing: "CPU" (active, no wait event) or the wait event.
func sampleWaits(ctx context.Context, app string, into map[string]int) {
	conn, err := pgx.Connect(ctx, *flagPG)
	if err != nil {
		fmt.Fprintln(os.Stderr, "multibench: wait sampler:", err)
		return
	}
	defer conn.Close(context.Background())
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ws, err := benchpg.ActiveWaits(ctx, conn, app)
		if err != nil {
			continue
		}
		for _, w := range ws {
			into[w]++
		}
	}
}

// report prints the medians of every configuration, and the ratios.
func report(configs []*config) {
	fmt.Printf("\n## %d clients, %d turns + %d spawns each, scripted delay %s: medians of %d runs [min–max]\n\n", *flagClients, *flagTurns, *flagSpawns, *flagDelay, *flagRuns)
	fmt.Printf("%-9s %4s %22s %9s %9s %10s %8s %22s %9s %9s %10s %8s %6s\n", "backend", "inst", "turns/s", "turn-p50", "turn-p95", "CPUms/turn", "retries",
		"spawns/s", "ack-p50", "ack-p95", "CPUms/spwn", "retries", "load")
	for _, c := range configs {
		f := func(get func(r *result) float64) []float64 {
			var v []float64
			for _, r := range c.reps {
				v = append(v, get(r))
			}
			return v
		}
		fmt.Printf("%-9s %4d %22s %9.1f %9.1f %10.2f %8.0f %22s %9.1f %9.1f %10.2f %8.0f %6.2f\n", c.backend, c.n,
			rng(f(func(r *result) float64 { return r.turns.opsPerSec() })),
			med(f(func(r *result) float64 { return ms(pct(r.turns.acks, 50)) })),
			med(f(func(r *result) float64 { return ms(pct(r.turns.acks, 95)) })),
			med(f(func(r *result) float64 { return ms(r.turns.cpuPerOp()) })),
			med(f(func(r *result) float64 { return float64(r.turns.retries) })),
			rng(f(func(r *result) float64 { return r.spawns.opsPerSec() })),
			med(f(func(r *result) float64 { return ms(pct(r.spawns.acks, 50)) })),
			med(f(func(r *result) float64 { return ms(pct(r.spawns.acks, 95)) })),
			med(f(func(r *result) float64 { return ms(r.spawns.cpuPerOp()) })),
			med(f(func(r *result) float64 { return float64(r.spawns.retries) })),
			med(f(func(r *result) float64 { return r.load })))
	}
	// Side-by-side ratios, per run (the configurations of one run ran
	// back to back), then the median.
	find := func(b string, n int) *config {
		for _, c := range configs {
			if c.backend == b && c.n == n {
				return c
			}
		}
		return nil
	}
	fmt.Printf("\nratios (per run, then the median): throughput postgres ÷ sqlite, and N instances ÷ 1 on the same backend\n")
	for _, c := range configs {
		lite := find(store.BackendSQLite, c.n)
		one := find(c.backend, 1)
		var tl, sl, t1, s1 []float64
		for i, r := range c.reps {
			if c.backend == store.BackendPostgres && lite != nil && i < len(lite.reps) {
				tl = append(tl, r.turns.opsPerSec()/lite.reps[i].turns.opsPerSec())
				sl = append(sl, r.spawns.opsPerSec()/lite.reps[i].spawns.opsPerSec())
			}
			if one != nil && i < len(one.reps) {
				t1 = append(t1, r.turns.opsPerSec()/one.reps[i].turns.opsPerSec())
				s1 = append(s1, r.spawns.opsPerSec()/one.reps[i].spawns.opsPerSec())
			}
		}
		line := fmt.Sprintf("  %-9s x%d:", c.backend, c.n)
		if len(tl) > 0 {
			line += fmt.Sprintf("  ÷sqlite turns %.2fx spawns %.2fx;", med(tl), med(sl))
		}
		if len(t1) > 0 {
			line += fmt.Sprintf("  ÷1 instance turns %.2fx spawns %.2fx", med(t1), med(s1))
		}
		fmt.Println(line)
	}
	fmt.Printf("\nwhere the time goes (all runs): CPU per op split, runs per instance, PostgreSQL backends' wait events (100 ms samples of active backends)\n")
	for _, c := range configs {
		for _, ph := range []struct {
			name string
			get  func(r *result) *phase
		}{{"turns", func(r *result) *phase { return r.turns }}, {"spawns", func(r *result) *phase { return r.spawns }}} {
			var srv, pg []float64
			waits := map[string]int{}
			var owners []string
			for _, r := range c.reps {
				p := ph.get(r)
				srv = append(srv, ms(p.serverCPU)/float64(p.ops))
				pg = append(pg, ms(p.pgCPU)/float64(p.ops))
				for w, k := range p.waits {
					waits[w] += k
				}
				var per []int
				for _, k := range p.perOwner {
					per = append(per, k)
				}
				sort.Sort(sort.Reverse(sort.IntSlice(per)))
				owners = append(owners, fmt.Sprint(per))
			}
			line := fmt.Sprintf("  %-9s x%d %-6s server %.2f + pg %.2f ms CPU/op; runs per instance %s", c.backend, c.n, ph.name, med(srv), med(pg), strings.Join(owners, " "))
			if len(waits) > 0 {
				line += "; waits " + topWaits(waits, 6)
			}
			fmt.Println(line)
		}
		if len(c.reps) > 0 && c.reps[0].tables != "" {
			fmt.Printf("  %-9s x%d tables (run 1, both phases): %s\n", c.backend, c.n, c.reps[0].tables)
		}
	}
}

func topWaits(w map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	total := 0
	for k, v := range w {
		all = append(all, kv{k, v})
		total += v
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i, e := range all {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", e.k, 100*float64(e.v)/float64(total)))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" (%d samples)", total)
}

func withParam(dsn, k, v string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*p/100]
}

func med(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func rng(v []float64) string {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return fmt.Sprintf("%.1f [%.1f–%.1f]", s[len(s)/2], s[0], s[len(s)-1])
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func nproc() int { return goruntime.NumCPU() }

// repoRoot is the directory of go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: run multibench from the repository")
		}
		dir = parent
	}
}
