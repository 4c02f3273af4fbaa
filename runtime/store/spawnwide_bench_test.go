package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// BenchmarkCreateRunWide is BenchmarkCreateRunSpawn's transaction in the
// shape of a wide fan-out: the spawns are queued behind a full lane, so up
// to 900 of the requester's runs are active when the next one is created
// under max_children_per_agent (ended in bulk, off the clock).
func BenchmarkCreateRunWide(b *testing.B) {
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
	st0 := s.WriteStats().Statements
	for i := 0; i < b.N; i++ {
		if i%900 == 899 {
			b.StopTimer()
			if _, err := s.DB().Exec(`UPDATE runs SET state = 'ok' WHERE state IN ('queued', 'running')`); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		child := fmt.Sprintf("agent:main:subagent:%08d", i)
		task := []Message{{SessionKey: child, Role: RoleUser, Trust: TrustInterSession, Content: Content{Text: fmt.Sprintf("task %d", i)}}}
		r := &Run{ID: fmt.Sprintf("run-%08d", i), Kind: "spawn", ChildKey: child, RequesterKey: me, AgentID: "main", MaxActiveSiblings: 1000}
		if err := s.CreateRun(ctx, &Session{Key: child, ParentKey: me, Depth: 1, Status: "queued"}, task, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/spawn")
	b.ReportMetric(float64(s.WriteStats().Statements-st0)/float64(b.N), "stmts/spawn")
}
