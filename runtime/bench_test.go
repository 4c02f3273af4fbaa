package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// BenchmarkLoopTurn: one agent turn (input persisted, one tool call
// dispatched and persisted, final answer persisted) against an instant
// in-process fake provider: the loop's own cost per turn.
func BenchmarkLoopTurn(b *testing.B) {
	tb := &fakeTools{specs: spec("a"), call: func(context.Context, policy.Caller, string, json.RawMessage) ToolResult {
		return ToolResult{Text: "ok"}
	}}
	e := newLoopEnv(b, tb, func(ctx context.Context, n int, req provider.Request) (*provider.Response, error) {
		if len(req.Messages) > 0 && req.Messages[len(req.Messages)-1].Role == provider.RoleUser {
			return &provider.Response{ToolCalls: []provider.ToolCall{{ID: "1", Name: "a", Args: json.RawMessage(`{}`)}}}, nil
		}
		return &provider.Response{Text: "done"}, nil
	})
	for i := 0; i < b.N; i++ {
		e.st.EnsureSession(context.Background(), store.Session{Key: fmt.Sprintf("agent:main:s%d", i)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := fmt.Sprintf("agent:main:s%d", i)
		t := e.turn("go")
		t.SessionKey, t.Caller.Key = key, key
		if res := e.rt.RunTurn(context.Background(), t); res.Status != StatusOK {
			b.Fatal(res.Note)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/turn")
}

// Benchmark200ConcurrentLoops: 200 loops at once, each three model calls
// (two tool rounds and a final answer) against a fake with 50 ms latency.
// Ideal wall time: 3 × 50 ms. Reports the ratio and heap per loop.
func Benchmark200ConcurrentLoops(b *testing.B) {
	const loops, latency, calls = 200, 50 * time.Millisecond, 3
	tb := &fakeTools{specs: spec("a"), call: func(context.Context, policy.Caller, string, json.RawMessage) ToolResult {
		return ToolResult{Text: "ok"}
	}}
	e := newLoopEnv(b, tb, func(ctx context.Context, n int, req provider.Request) (*provider.Response, error) {
		t := time.NewTimer(latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		assistant := 0
		for _, m := range req.Messages {
			if m.Role == provider.RoleAssistant {
				assistant++
			}
		}
		if assistant < calls-1 {
			return &provider.Response{ToolCalls: []provider.ToolCall{{ID: "c", Name: "a", Args: json.RawMessage(`{}`)}}}, nil
		}
		return &provider.Response{Text: "done"}, nil
	})
	for i := 0; i < b.N; i++ {
		for j := 0; j < loops; j++ {
			e.st.EnsureSession(context.Background(), store.Session{Key: fmt.Sprintf("agent:main:b%d-%d", i, j)})
		}
		var before, after goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&before)
		var peak uint64
		var wg sync.WaitGroup
		start := time.Now()
		for j := 0; j < loops; j++ {
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				t := e.turn("go")
				t.SessionKey = fmt.Sprintf("agent:main:b%d-%d", i, j)
				t.Caller.Key = t.SessionKey
				if res := e.rt.RunTurn(context.Background(), t); res.Status != StatusOK || res.Iterations != calls {
					b.Errorf("loop %d: %+v", j, res)
				}
				if j == loops/2 {
					var m goruntime.MemStats
					goruntime.ReadMemStats(&m)
					peak = m.HeapInuse
				}
			}(j)
		}
		wg.Wait()
		wall := time.Since(start)
		goruntime.ReadMemStats(&after)
		b.ReportMetric(wall.Seconds()/(calls*latency).Seconds(), "x-ideal")
		b.ReportMetric(float64(wall.Milliseconds()), "wall-ms")
		if peak > before.HeapInuse {
			b.ReportMetric(float64(peak-before.HeapInuse)/loops/1024, "heap-KiB/loop")
		}
	}
}
