// Command refbench measures sessionplane against the reference TypeScript MCP
// server, @modelcontextprotocol/server-everything, side by side in one run
// and with the same client (mcp-go's stdio client, one code path for both
// servers):
//
//   - process start → initialize response, over -starts fresh starts of
//     each server (interleaved, so drift in machine load hits both alike);
//   - sequential tools/call round trips on one warm connection per server,
//     every server connected at once and the probes interleaved in rounds:
//     sessions_list {} and session_status {} against server-everything's
//     echo {message: "hi"}, with the floor beside them: the smallest mcp-go
//     echo server (refbench itself, -serve-echo), and ping on each;
//   - with -baseline DIR, a second sessionplane built from DIR (say main,
//     exported with git archive) measured in the same rounds: before/after
//     ratios from one run;
//
// and then, for sessionplane alone, sessions_search latency through the store
// at 100k and 1M messages (the corpus and query mix of BenchmarkSearch100k in
// runtime/store) with the insert throughput seen while seeding.
//
// Run it from the repository root:
//
//	go run ./bench/refbench                     # everything (about 2-3 minutes on 2 cores)
//	go run ./bench/refbench -search ''          # the reference comparison only
//	go run ./bench/refbench -n 200 -starts 30 -search 100000,1000000 -queries 500
//	git archive main | tar -x -C /tmp/base && go run ./bench/refbench -search '' -baseline /tmp/base
//
// sessionplane is built with go build into a temporary directory and run with
// --db in that directory, no config file (SESSIONPLANE_CONFIG="" and
// XDG_CONFIG_HOME pointing at the temporary directory). server-everything is
// e2e/node_modules/.bin/mcp-server-everything (pinned in e2e/package.json;
// npm ci runs in e2e/ when it is missing), started as `mcp-server-everything
// stdio`. Before each section refbench waits (up to -loadwait) for the 1-minute
// load average to drop to -maxload and prints the load it measured under.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

var (
	flagN        = flag.Int("n", 200, "sequential tool calls per server (after one warm-up call)")
	flagStarts   = flag.Int("starts", 30, "fresh process starts per server")
	flagSearch   = flag.String("search", "100000,1000000", "message counts for the sessions_search measurement, ascending, comma-separated (empty: skip)")
	flagQueries  = flag.Int("queries", 500, "search queries per size (cycling through the 10-query mix, after one warm-up pass)")
	flagMaxLoad  = flag.Float64("maxload", 1.0, "wait before each section until the 1-minute load average is at most this")
	flagLoadWait = flag.Duration("loadwait", 5*time.Minute, "longest wait for -maxload (then measure anyway and say so)")
	flagKeep     = flag.Bool("keep", false, "keep the temporary directory (binary, databases)")
	flagBaseline = flag.String("baseline", "", "another sessionplane checkout (say, main exported with git archive) measured in the same run, side by side")
	flagServe    = flag.Bool("serve-echo", false, "internal: serve the minimal mcp-go echo server (the floor) on stdio")
)

// protocolVersion is pinned for both servers: the initialize handshake era
// (mcp-go would otherwise try server/discover first, an extra round trip
// that server-everything does not answer).
const protocolVersion = "2025-11-25"

func main() {
	flag.Parse()
	if *flagServe {
		if err := serveEcho(); err != nil {
			fmt.Fprintln(os.Stderr, "refbench -serve-echo:", err)
			os.Exit(1)
		}
		return
	}
	if *flagSearchPG != "" {
		sizes, err := searchSizes()
		if err == nil {
			err = searchPGBench(sizes, *flagQueries, *flagSearchRuns)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "refbench -search-pg:", err)
			os.Exit(1)
		}
		return
	}
	if *flagSearchDB != "" {
		if err := searchDB(*flagSearchDB, *flagQueries); err != nil {
			fmt.Fprintln(os.Stderr, "refbench -searchdb:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "refbench:", err)
		os.Exit(1)
	}
}

// server says how to start one server under test and which tool to call.
type server struct {
	name string
	cmd  string
	args func(i int) []string // arguments for start i
	env  []string
	tool string
	targ map[string]any
	want string // a substring the tool's text must contain
	// info: further tools ({} arguments) timed the same way.
	info []string
}

func run() error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "refbench-")
	if err != nil {
		return err
	}
	if *flagKeep {
		fmt.Println("temporary directory:", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	machine()

	bin := filepath.Join(tmp, "sessionplane")
	t0 := time.Now()
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	fmt.Printf("built sessionplane in %.1fs: %s\n", time.Since(t0).Seconds(), bin)

	var base string
	if *flagBaseline != "" {
		base = filepath.Join(tmp, "sessionplane-baseline")
		t0 := time.Now()
		build := exec.Command("go", "build", "-o", base, ".")
		build.Dir = *flagBaseline
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build in -baseline %s: %v\n%s", *flagBaseline, err, out)
		}
		fmt.Printf("built the baseline in %.1fs from %s: %s\n", time.Since(t0).Seconds(), *flagBaseline, base)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	everything, err := serverEverything(root)
	if err != nil {
		return err
	}
	ver := npmVersion(root, "@modelcontextprotocol/server-everything")
	fmt.Printf("reference: @modelcontextprotocol/server-everything %s (%s stdio), node %s\n", ver, everything, nodeVersion())

	hermetic := []string{"SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME=" + tmp}
	sp := &server{
		name: "sessionplane",
		cmd:  bin,
		args: func(i int) []string {
			return []string{"--db", filepath.Join(tmp, fmt.Sprintf("start%d.db", i)), "--log-level", "error"}
		},
		env:  hermetic,
		tool: "sessions_list",
		targ: map[string]any{},
		want: "",
		info: []string{"session_status", "agents_list"},
	}
	var bs *server
	if base != "" {
		bs = &server{name: "baseline", cmd: base, env: hermetic, tool: "sessions_list", targ: map[string]any{},
			args: func(i int) []string {
				return []string{"--db", filepath.Join(tmp, fmt.Sprintf("base%d.db", i)), "--log-level", "error"}
			},
			info: []string{"session_status", "agents_list"}}
	}
	floor := &server{name: "mcp-go echo", cmd: self, args: func(int) []string { return []string{"-serve-echo"} },
		env: hermetic, tool: "echo", targ: map[string]any{"message": "hi"}, want: "Echo: hi"}
	ref := &server{
		name: "server-everything",
		cmd:  everything,
		args: func(int) []string { return []string{"stdio"} },
		env:  hermetic,
		tool: "echo",
		targ: map[string]any{"message": "hi"},
		want: "Echo: hi",
	}

	// 1. start → initialize, interleaved.
	load := waitQuiet("start → initialize")
	starts := map[string][]time.Duration{}
	starters := []*server{sp, ref}
	if bs != nil {
		starters = []*server{sp, bs, ref}
	}
	for i := 0; i < *flagStarts+1; i++ { // start 0 of each is a warm-up (page cache)
		for _, s := range starters {
			d, err := startToInitialize(s, i)
			if err != nil {
				return fmt.Errorf("%s start %d: %w", s.name, i, err)
			}
			if i > 0 {
				starts[s.name] = append(starts[s.name], d)
			}
		}
	}
	startLoad := load

	// 2. sequential round trips, every server connected at once and the
	// probes interleaved in rounds, so drift in machine load hits all alike.
	load = waitQuiet("tool round trips")
	servers := []*server{sp}
	if bs != nil {
		servers = append(servers, bs)
	}
	servers = append(servers, floor, ref)
	times, rss, err := roundTrips(servers, *flagN)
	if err != nil {
		return err
	}
	rtLoad := load

	fmt.Println()
	fmt.Printf("## sessionplane vs @modelcontextprotocol/server-everything %s (same client: mcp-go stdio, protocol %s)\n\n", ver, protocolVersion)
	fmt.Printf("start → initialize: %d fresh starts each (interleaved, after one warm-up start each); load average %.2f\n", *flagStarts, startLoad)
	fmt.Printf("round trips: %d sequential calls of each probe on one connection per server, probes interleaved in rounds of %d, after one warm-up call each; load average %.2f\n\n", *flagN, roundSize, rtLoad)
	fmt.Printf("%-44s %16s %18s %8s\n", "measure", "sessionplane", "server-everything", "ratio")
	row := func(what string, a, b []time.Duration) {
		for _, st := range []struct {
			n string
			f func([]time.Duration) time.Duration
		}{{"p50", p50}, {"p95", p95}, {"mean", mean}} {
			x, y := st.f(a), st.f(b)
			fmt.Printf("%-44s %13.2f ms %15.2f ms %7.2fx\n", what+" "+st.n, ms(x), ms(y), ms(x)/ms(y))
		}
	}
	refEcho := times[ref.name+" echo"]
	row("start → initialize", starts[sp.name], starts[ref.name])
	row("tools/call sessions_list {} vs echo {hi}", times[sp.name+" sessions_list"], refEcho)
	row("ping", times[sp.name+" ping"], times[ref.name+" ping"])
	fmt.Printf("%-44s %13.1f MB %15.1f MB\n", "server peak RSS (VmHWM) after the calls", float64(rss[sp.name])/1024, float64(rss[ref.name])/1024)

	fmt.Printf("\nevery probe ÷ server-everything echo {hi} (the same client, interleaved rounds):\n\n")
	fmt.Printf("%-40s %9s %9s %9s %8s %8s\n", "probe", "p50-ms", "p95-ms", "mean-ms", "÷p50", "÷mean")
	for _, s := range servers {
		for _, name := range probeNames(s) {
			d := times[s.name+" "+name]
			fmt.Printf("%-40s %9.3f %9.3f %9.3f %7.2fx %7.2fx\n", s.name+" "+name, ms(p50(d)), ms(p95(d)), ms(mean(d)),
				ms(p50(d))/ms(p50(refEcho)), ms(mean(d))/ms(mean(refEcho)))
		}
	}
	fmt.Println()
	verdict := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "NOT MET"
	}
	spStart, refStart := p50(starts[sp.name]), p50(starts[ref.name])
	fmt.Printf("target start-up ≤ 30 ms (p50): %.2f ms: %s\n", ms(spStart), verdict(spStart <= 30*time.Millisecond))
	if bs != nil {
		fmt.Printf("  (baseline: %.2f ms, same rounds)\n", ms(p50(starts[bs.name])))
	}
	fmt.Printf("target start-up ≤ 0.5× reference (p50): %.2f / %.2f ms = %.2fx: %s\n", ms(spStart), ms(refStart), ms(spStart)/ms(refStart), verdict(2*spStart <= refStart))
	for _, tool := range []string{"sessions_list", "session_status"} {
		d := times[sp.name+" "+tool]
		fmt.Printf("target %s {} ≤ 1.0× reference echo (p50): %.3f / %.3f ms = %.2fx: %s\n", tool, ms(p50(d)), ms(p50(refEcho)),
			ms(p50(d))/ms(p50(refEcho)), verdict(p50(d) <= p50(refEcho)))
		if bs != nil {
			b := times[bs.name+" "+tool]
			fmt.Printf("  (baseline: %.3f ms = %.2fx)\n", ms(p50(b)), ms(p50(b))/ms(p50(refEcho)))
		}
	}
	fl := times[floor.name+" echo"]
	fmt.Printf("floor: minimal mcp-go echo ÷ reference echo (p50): %.3f / %.3f ms = %.2fx\n", ms(p50(fl)), ms(p50(refEcho)), ms(p50(fl))/ms(p50(refEcho)))

	// 3. search at 100k and 1M messages.
	if strings.TrimSpace(*flagSearch) != "" {
		var sizes []int
		for _, f := range strings.Split(*flagSearch, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 100 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
				return fmt.Errorf("-search %q: want ascending message counts", *flagSearch)
			}
			sizes = append(sizes, n)
		}
		if err := searchBench(tmp, sizes, *flagQueries); err != nil {
			return err
		}
	}
	return nil
}

// startToInitialize starts a fresh server process and times fork-exec to the
// initialize response; the shutdown is not timed.
func startToInitialize(s *server, i int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _ := newClient(s, i)
	defer c.Close()
	t0 := time.Now()
	if err := c.Start(ctx); err != nil {
		return 0, err
	}
	if _, err := c.Initialize(ctx, initReq()); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// roundSize is how many calls of one probe run back to back before the
// next probe's turn.
const roundSize = 20

// probeNames are a server's probes: its tool, its info tools, ping.
func probeNames(s *server) []string {
	return append(append([]string{s.tool}, s.info...), "ping")
}

// roundTrips starts every server, initializes, warms each probe up with
// one call, then times n sequential calls of each probe, interleaved in
// rounds of roundSize. times is keyed "<server> <probe>"; rssKB is each
// server's peak RSS after the calls.
func roundTrips(servers []*server, n int) (times map[string][]time.Duration, rssKB map[string]int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	type probe struct {
		key string
		f   func() error
	}
	var probes []probe
	procs := map[string]func() *exec.Cmd{}
	for _, s := range servers {
		c, proc := newClient(s, 1_000_000)
		defer c.Close()
		if err := c.Start(ctx); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if _, err := c.Initialize(ctx, initReq()); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.name, err)
		}
		procs[s.name] = proc
		call := func(name string, args map[string]any, want string) func() error {
			return func() error {
				req := mcp.CallToolRequest{}
				req.Params.Name = name
				req.Params.Arguments = args
				res, err := c.CallTool(ctx, req)
				if err != nil {
					return err
				}
				if res.IsError {
					return fmt.Errorf("%s: tool error: %v", name, res.Content)
				}
				if want != "" {
					if len(res.Content) == 0 {
						return fmt.Errorf("%s: empty result", name)
					}
					tc, ok := res.Content[0].(mcp.TextContent)
					if !ok || !strings.Contains(tc.Text, want) {
						return fmt.Errorf("%s: result %v, want %q", name, res.Content, want)
					}
				}
				return nil
			}
		}
		probes = append(probes, probe{s.name + " " + s.tool, call(s.tool, s.targ, s.want)})
		for _, name := range s.info {
			probes = append(probes, probe{s.name + " " + name, call(name, map[string]any{}, "")})
		}
		probes = append(probes, probe{s.name + " ping", func() error { return c.Ping(ctx) }})
	}
	times = map[string][]time.Duration{}
	for _, p := range probes {
		if err := p.f(); err != nil { // warm-up
			return nil, nil, fmt.Errorf("%s: %w", p.key, err)
		}
	}
	for done := 0; done < n; done += roundSize {
		k := min(roundSize, n-done)
		for _, p := range probes {
			for i := 0; i < k; i++ {
				t0 := time.Now()
				if err := p.f(); err != nil {
					return nil, nil, fmt.Errorf("%s: %w", p.key, err)
				}
				times[p.key] = append(times[p.key], time.Since(t0))
			}
		}
	}
	rssKB = map[string]int{}
	for name, proc := range procs {
		if cmd := proc(); cmd != nil && cmd.Process != nil {
			rssKB[name] = procStatusKB(cmd.Process.Pid, "VmHWM:")
		}
	}
	return times, rssKB, nil
}

// newClient makes the mcp-go stdio client for start i of a server; the
// process starts at c.Start. The command factory sets the whole environment
// (os.Environ plus the hermetic overrides); proc returns the started
// *exec.Cmd (nil before c.Start).
func newClient(s *server, i int) (c *client.Client, proc func() *exec.Cmd) {
	var started *exec.Cmd
	tr := transport.NewStdioWithOptions(s.cmd, s.env, s.args(i), transport.WithCommandFunc(
		func(ctx context.Context, command string, env []string, args []string) (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, command, args...)
			cmd.Env = append(os.Environ(), env...)
			started = cmd
			return cmd, nil
		}))
	return client.NewClient(tr), func() *exec.Cmd { return started }
}

func initReq() mcp.InitializeRequest {
	var r mcp.InitializeRequest
	r.Params.ProtocolVersion = protocolVersion
	r.Params.ClientInfo = mcp.Implementation{Name: "refbench", Version: "1"}
	return r
}

// serverEverything finds the reference server's binary, running npm ci in
// e2e/ when it is missing.
func serverEverything(root string) (string, error) {
	bin := filepath.Join(root, "e2e", "node_modules", ".bin", "mcp-server-everything")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Println("e2e/node_modules/.bin/mcp-server-everything is missing: running npm ci in e2e/")
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = filepath.Join(root, "e2e")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in e2e/ (needs Node.js 20+ and npm): %v\n%s", err, out)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("after npm ci: %w", err)
	}
	return bin, nil
}

// repoRoot walks up from the working directory to this module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/sessionplane/sessionplane\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run refbench inside the sessionplane repository (go run ./bench/refbench)")
		}
		dir = parent
	}
}

func npmVersion(root, pkg string) string {
	b, err := os.ReadFile(filepath.Join(root, "e2e", "node_modules", filepath.FromSlash(pkg), "package.json"))
	if err != nil {
		return "?"
	}
	const key = `"version": "`
	i := strings.Index(string(b), key)
	if i < 0 {
		return "?"
	}
	rest := string(b)[i+len(key):]
	return rest[:strings.IndexByte(rest, '"')]
}

func nodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// machine prints what the figures were measured on.
func machine() {
	model := "?"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	memMB := procMeminfoKB("MemTotal:") / 1024
	fmt.Printf("machine: %d CPUs (%s), %d MB RAM, %s %s/%s, %s\n", goruntime.NumCPU(), model, memMB,
		goruntime.Version(), goruntime.GOOS, goruntime.GOARCH, time.Now().UTC().Format(time.RFC3339))
}

func procMeminfoKB(key string) int {
	b, _ := os.ReadFile("/proc/meminfo")
	return kbField(string(b), key)
}

func procStatusKB(pid int, key string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	return kbField(string(b), key)
}

func kbField(text, key string) int {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line[len(key):])
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// loadavg is the 1-minute load average (-1 when unknown).
func loadavg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// waitQuiet waits until the load average is at most -maxload (or -loadwait
// passes) and returns the load it ends with.
func waitQuiet(section string) float64 {
	deadline := time.Now().Add(*flagLoadWait)
	l := loadavg()
	said := false
	for l > *flagMaxLoad && time.Now().Before(deadline) {
		if !said {
			fmt.Printf("%s: load average %.2f > %.2f, waiting (up to %s)\n", section, l, *flagMaxLoad, *flagLoadWait)
			said = true
		}
		time.Sleep(5 * time.Second)
		l = loadavg()
	}
	if l > *flagMaxLoad {
		fmt.Printf("%s: WARNING: measuring under load average %.2f\n", section, l)
	}
	return l
}

func sorted(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// p50 and p95 pick like the Go benchmarks: sorted[len/2], sorted[len*95/100].
func p50(d []time.Duration) time.Duration { return sorted(d)[len(d)/2] }
func p95(d []time.Duration) time.Duration { return sorted(d)[len(d)*95/100] }
func mean(d []time.Duration) time.Duration {
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t / time.Duration(len(d))
}
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
