package store

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCreateRunSpawn is a spawn's transaction alone: a new child
// session with its task, the run created running (claimed) under
// max_children_per_agent, and the spawn call's record in the requester's
// transcript, one at a time. At most 64 runs are active (ended in bulk,
// off the clock), as in BenchmarkSpawnFanout1000's lane. Reports the
// process's CPU per spawn.
func BenchmarkCreateRunSpawn(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, testdb.DSN(b, "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	me := "agent:main:main"
	if _, err := s.EnsureSession(ctx, Session{Key: me}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if i%64 == 63 {
			b.StopTimer()
			if _, err := s.DB().Exec(`UPDATE runs SET state = 'ok' WHERE state = 'running'`); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		child := fmt.Sprintf("agent:main:subagent:%08d", i)
		id := fmt.Sprintf("run-%08d", i)
		rec := &CallRecord{Requester: me, Messages: []Message{
			{SessionKey: me, Role: RoleAssistant, Trust: TrustUser, Content: Content{ToolCalls: []ToolCall{{ID: id, Name: "sessions_spawn", Args: []byte(`{"task":"task"}`)}}}},
			{SessionKey: me, Role: RoleTool, Trust: TrustExternal, Content: Content{ToolResults: []ToolResult{{CallID: id, Name: "sessions_spawn", Content: "Sub-agent accepted.\nRun: " + id}}}},
		}}
		task := []Message{{SessionKey: child, Role: RoleUser, Trust: TrustInterSession, Content: Content{Text: fmt.Sprintf("task %d", i)}}}
		r := &Run{ID: id, Kind: "spawn", ChildKey: child, RequesterKey: me, AgentID: "main", State: RunRunning, Record: rec, MaxActiveSiblings: 1000}
		if err := s.CreateRun(ctx, &Session{Key: child, ParentKey: me, Depth: 1, Status: "queued"}, task, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/spawn")
}
