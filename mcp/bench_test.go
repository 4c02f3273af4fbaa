package mcp

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// BenchmarkSessionsList10k: sessions_list (limit 20 and 100) through an
// in-process MCP client over 10,000 sessions.
func BenchmarkSessionsList10k(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(b, "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 10_000; i++ {
		if _, err := st.EnsureSession(ctx, store.Session{Key: fmt.Sprintf("agent:main:s%05d", i), Label: fmt.Sprintf("session %d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := Build(config.Default(), st, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.NewInProcessClient(srv.MCPServer())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Start(ctx)
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	if _, err := c.Initialize(ctx, init); err != nil {
		b.Fatal(err)
	}
	for _, limit := range []int{20, 100} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			req := mcp.CallToolRequest{}
			req.Params.Name = "sessions_list"
			req.Params.Arguments = map[string]any{"limit": limit}
			for i := 0; i < b.N; i++ {
				res, err := c.CallTool(ctx, req)
				if err != nil || res.IsError {
					b.Fatalf("%v %v", err, res)
				}
			}
		})
	}
}

// latencyProvider answers after a fixed delay (honouring cancellation).
type latencyProvider struct{ d time.Duration }

func (latencyProvider) Name() string { return "script" }
func (p latencyProvider) Complete(ctx context.Context, req provider.Request) (*provider.Response, error) {
	t := time.NewTimer(p.d)
	defer t.Stop()
	select {
	case <-t.C:
		return &provider.Response{Text: "done", Usage: provider.Usage{InputTokens: 100, OutputTokens: 20}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// numGC is how many GC cycles the process has completed.
func numGC() uint32 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.NumGC
}

func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkSpawnFanout1000: 1,000 sessions_spawn calls through an
// in-process MCP client, a fake provider with 50 ms latency, max_concurrent
// 64. Reports wall time against the ideal (ceil(1000/64) × 50 ms), peak RSS
// of the process, and spawn→announce latency p50/p95 (accepted to announce
// row committed).
func BenchmarkSpawnFanout1000(b *testing.B) {
	for _, inflight := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) { benchFanout(b, inflight) })
	}
}

func benchFanout(b *testing.B, inflight int) {
	const n, lane = 1000, 64
	const model = 50 * time.Millisecond
	for i := 0; i < b.N; i++ {
		ctx := context.Background()
		st, err := store.Open(ctx, testdb.DSN(b, "b.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		cfg, err := config.Parse([]byte(fmt.Sprintf(`
[providers.script]
kind = "scripted"
script = "x"
[[models]]
id = "script/m"
provider = "script"
[agents.defaults]
model = "script/m"
[agents.defaults.subagents]
max_concurrent = %d
max_children_per_agent = %d
[approval]
spawn-subagent = "none"
`, lane, n)), "bench.toml")
		if err != nil {
			b.Fatal(err)
		}
		srv, err := Build(cfg, st, &BuildOptions{Providers: map[string]provider.Provider{"script": latencyProvider{model}}})
		if err != nil {
			b.Fatal(err)
		}
		srv.Start(ctx)
		c, _ := client.NewInProcessClient(srv.MCPServer())
		c.Start(ctx)
		init := mcp.InitializeRequest{}
		init.Params.ProtocolVersion = "2025-11-25"
		c.Initialize(ctx, init)
		// The client keeps `inflight` calls in flight (MCP requests may be
		// concurrent; the server's stdio worker pool is 64).
		accepted := make(map[string]time.Time, n)
		var mu sync.Mutex
		var wg sync.WaitGroup
		next := make(chan int)
		start, cpu0, w0 := time.Now(), cpuTime(), st.WriteStats()
		for w := 0; w < inflight; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range next {
					req := mcp.CallToolRequest{}
					req.Params.Name = "sessions_spawn"
					req.Params.Arguments = map[string]any{"task": fmt.Sprintf("task %d", j)}
					res, err := c.CallTool(ctx, req)
					if err != nil || res.IsError {
						b.Errorf("spawn %d: %v %v", j, err, res)
						continue
					}
					id := res.StructuredContent.(map[string]any)["runId"].(string)
					mu.Lock()
					accepted[id] = time.Now()
					mu.Unlock()
				}
			}()
		}
		for j := 0; j < n; j++ {
			next <- j
		}
		close(next)
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
		b.ReportMetric(time.Since(start).Seconds(), "submit-s")
		// Wait for every announce with a cheap count (SQLite counts the
		// b-tree without reading rows) every 10 ms, as before; the
		// latencies are read once, at the end. Polling the whole table
		// each time was 6.5 % of the CPU charged to the spawns.
		for {
			var got int
			if err := st.DB().QueryRow(`SELECT count(*) FROM announces`).Scan(&got); err != nil {
				b.Fatal(err)
			}
			if got >= n {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		wall := time.Since(start)
		cpu1 := cpuTime()
		// An announce's latency: accepted (the spawn call answered, client
		// clock) to its announce written (created_at, store clock).
		var lat []time.Duration
		rows, err := st.DB().Query(`SELECT run_id, created_at FROM announces`)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var id string
			var at int64
			rows.Scan(&id, &at)
			lat = append(lat, time.UnixMilli(at).Sub(accepted[id]))
		}
		rows.Close()
		// CPU per spawn (client, server, runs and writer alike): on a
		// loaded 2-core machine, where wall time follows the load, this
		// still says how much work a spawn is.
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/n, "cpu-µs/spawn")
		// The writer's work per spawn, as counts: waited writes (a caller
		// blocked on the commit), all writes, and transactions committed.
		w1 := st.WriteStats()
		b.ReportMetric(float64(w1.Waited-w0.Waited)/n, "waited-writes/spawn")
		b.ReportMetric(float64(w1.Waited+w1.Async-w0.Waited-w0.Async)/n, "writes/spawn")
		b.ReportMetric(float64(w1.Commits-w0.Commits)/n, "commits/spawn")
		b.ReportMetric(float64(w1.Statements-w0.Statements)/n, "stmts/spawn")
		ideal := time.Duration((n+lane-1)/lane) * model
		sort.Slice(lat, func(a, c int) bool { return lat[a] < lat[c] })
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(wall.Seconds()/ideal.Seconds(), "x-ideal")
		b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
		b.ReportMetric(float64(lat[n/2].Milliseconds()), "announce-p50-ms")
		b.ReportMetric(float64(lat[n*95/100].Milliseconds()), "announce-p95-ms")
		var bad int
		st.DB().QueryRow(`SELECT count(*) FROM runs WHERE state != 'ok'`).Scan(&bad)
		if bad != 0 {
			b.Fatalf("%d runs did not end ok", bad)
		}
		c.Close()
		srv.Close()
		st.Close()
	}
}

// BenchmarkSmallCalls: sessions_list {} and session_status {} on a fresh
// store through an in-process MCP client: the server's own cost of a
// read-only call (policy, store, record, JSON), without stdio.
func BenchmarkSmallCalls(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(b, "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv, err := Build(config.Default(), st, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	c, err := client.NewInProcessClient(srv.MCPServer())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Start(ctx)
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	if _, err := c.Initialize(ctx, init); err != nil {
		b.Fatal(err)
	}
	for _, tool := range []string{"sessions_list", "session_status"} {
		b.Run(tool, func(b *testing.B) {
			req := mcp.CallToolRequest{}
			req.Params.Name = tool
			req.Params.Arguments = map[string]any{}
			cpu0, w0, gc0 := cpuTime(), st.WriteStats(), numGC()
			for i := 0; i < b.N; i++ {
				res, err := c.CallTool(ctx, req)
				if err != nil || res.IsError {
					b.Fatalf("%v %v", err, res)
				}
			}
			// Commits per call: how well the writer batches the records of
			// calls made in sequence (exact, whatever the load).
			st.Flush(ctx, "agent:main:main")
			w1 := st.WriteStats()
			b.ReportMetric(float64(w1.Commits-w0.Commits)/float64(b.N), "commits/op")
			// CPU time (client, server and writer alike) holds its value
			// on a loaded machine, where wall time does not.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			// Collections per 1,000 calls: what the calls' garbage costs
			// in GC cycles (each stops the world and scans every stack),
			// steady whatever the load.
			b.ReportMetric(float64(numGC()-gc0)*1000/float64(b.N), "gcs/kop")
		})
	}
}

// BenchmarkStdioCalls: sessions_list {} and session_status {} through the
// real stdio server (ServeStdio: JSON-RPC lines, the worker pool) over
// pipes, with mcp-go's stdio client: refbench's round trip without the
// process boundary, so a CPU profile shows the server's whole share.
func BenchmarkStdioCalls(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, testdb.DSN(b, "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv, err := Build(config.Default(), st, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cin, sout := io.Pipe() // server → client
	sin, cout := io.Pipe() // client → server
	served := make(chan error, 1)
	go func() { served <- srv.ServeStdio(ctx, sin, sout, 64) }()
	c := client.NewClient(transport.NewIO(cin, cout, io.NopCloser(strings.NewReader(""))))
	defer func() {
		cout.Close() // the server reads EOF
		cancel()
		<-served
		sout.Close() // the client's reader reads EOF
		c.Close()
	}()
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	if _, err := c.Initialize(ctx, init); err != nil {
		b.Fatal(err)
	}
	for _, tool := range []string{"sessions_list", "session_status"} {
		b.Run(tool, func(b *testing.B) {
			req := mcp.CallToolRequest{}
			req.Params.Name = tool
			req.Params.Arguments = map[string]any{}
			cpu0, w0, gc0 := cpuTime(), st.WriteStats(), numGC()
			for i := 0; i < b.N; i++ {
				res, err := c.CallTool(ctx, req)
				if err != nil || res.IsError {
					b.Fatalf("%v %v", err, res)
				}
			}
			// Commits per call: how well the writer batches the records of
			// calls made in sequence (exact, whatever the load).
			st.Flush(ctx, "agent:main:main")
			w1 := st.WriteStats()
			b.ReportMetric(float64(w1.Commits-w0.Commits)/float64(b.N), "commits/op")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			// Collections per 1,000 calls: what the calls' garbage costs
			// in GC cycles (each stops the world and scans every stack),
			// steady whatever the load.
			b.ReportMetric(float64(numGC()-gc0)*1000/float64(b.N), "gcs/kop")
		})
	}
}
