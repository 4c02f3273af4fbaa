package store

import (
	"fmt"
	"testing"
)

// BenchmarkCreateRunWide is BenchmarkCreateRunSpawn's transaction in the
// shape of a wide fan-out: the spawns are queued behind a full lane, so up
// to 900 of the requester's runs are active when the next one is created
// under max_children_per_agent (ended in bulk, off the clock).
func BenchmarkCreateRunWide(b *testing.B) {
	s, me := openSpawnBench(b, "")
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
		spawnForBench(b, s, me, i, fmt.Sprintf("task %d", i), "")
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/spawn")
	b.ReportMetric(float64(s.WriteStats().Statements-st0)/float64(b.N), "stmts/spawn")
}
