package store

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
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
	s, me := openSpawnBench(b, "")
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
		spawnForBench(b, s, me, i, fmt.Sprintf("task %d", i), RunRunning)
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/spawn")
}

// openSpawnBench opens a store for a spawn benchmark (at path, or a new
// file in b's temp dir when ""), closed when b ends, with the requester's
// session agent:main:main.
func openSpawnBench(b *testing.B, path string) (s *Store, me string) {
	s, me = openTest(b, path), "agent:main:main"
	if _, err := s.EnsureSession(context.Background(), Session{Key: me}); err != nil {
		b.Fatal(err)
	}
	return s, me
}

// spawnForBench creates spawn i of requester me as sessions_spawn does: a
// new child session with its task, the run in state (RunRunning: claimed
// at once; "" queued) under max_children_per_agent 1000, and, for a run
// created running, the spawn call's record in me's transcript. It returns
// the run id.
func spawnForBench(b *testing.B, s *Store, me string, i int, task, state string) string {
	child := fmt.Sprintf("agent:main:subagent:%08d", i)
	id := fmt.Sprintf("run-%08d", i)
	var rec *CallRecord
	if state == RunRunning {
		rec = &CallRecord{Requester: me, Messages: []Message{
			{SessionKey: me, Role: RoleAssistant, Trust: TrustUser, Content: Content{ToolCalls: []ToolCall{{ID: id, Name: "sessions_spawn", Args: []byte(`{"task":"task"}`)}}}},
			{SessionKey: me, Role: RoleTool, Trust: TrustExternal, Content: Content{ToolResults: []ToolResult{{CallID: id, Name: "sessions_spawn", Content: "Sub-agent accepted.\nRun: " + id}}}},
		}}
	}
	msgs := []Message{{SessionKey: child, Role: RoleUser, Trust: TrustInterSession, Content: Content{Text: task}}}
	r := &Run{ID: id, Kind: "spawn", ChildKey: child, RequesterKey: me, AgentID: "main", State: state, Record: rec, MaxActiveSiblings: 1000}
	if err := s.CreateRun(context.Background(), &Session{Key: child, ParentKey: me, Depth: 1, Status: "queued"}, msgs, r); err != nil {
		b.Fatal(err)
	}
	return id
}
