package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// walPages is the page number of every frame in an SQLite -wal file.
func walPages(t testing.TB, path string) []uint32 {
	t.Helper()
	b, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 32 {
		return nil
	}
	pageSize := int(binary.BigEndian.Uint32(b[8:12]))
	var pages []uint32
	for off := 32; off+24+pageSize <= len(b); off += 24 + pageSize {
		pages = append(pages, binary.BigEndian.Uint32(b[off:off+4]))
	}
	return pages
}

// BenchmarkSpawnPages counts the WAL frames (dirty pages) of a spawn's
// transaction (CreateRun with its task and the call's record) and of its
// run's end (FinishRunAndClaim with the final answer and the announce),
// each committed alone, in a store that has seen 1,000 spawns, and logs the
// b-trees the frames belong to (dbstat). b.N is ignored past 20 rounds.
// SQLite only.
func BenchmarkSpawnPages(b *testing.B) {
	if testdb.Postgres() {
		b.Skip("WAL frames are SQLite's")
	}
	ctx := context.Background()
	path := testdb.DSN(b, "p.db")
	s, me := openSpawnBench(b, path)
	spawn := func(i int) string {
		return spawnForBench(b, s, me, i, fmt.Sprintf("summarize report %d for the team", i), RunRunning)
	}
	finish := func(i int, id string) {
		child := fmt.Sprintf("agent:main:subagent:%08d", i)
		final := Message{SessionKey: child, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: fmt.Sprintf("report %d summarized", i)}, TokensIn: 10, TokensOut: 5}
		done, _, err := s.FinishRunAndClaim(ctx, id, Outcome{State: RunOK, ResultText: "ok", SessionStatus: "done", Messages: []Message{final}},
			&Announce{RequesterKey: me, Status: RunOK, Body: "Result: ok"}, nil)
		if err != nil || !done {
			b.Fatalf("finish %s: %v %v", id, done, err)
		}
	}
	for i := 0; i < 1000; i++ {
		finish(i, spawn(i))
	}
	truncate := func() {
		if _, err := s.DB().ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			b.Fatal(err)
		}
	}
	names := func(pages []uint32, into map[string]int) {
		for _, p := range pages {
			var name string
			if err := s.DB().QueryRowContext(ctx, "SELECT name FROM dbstat WHERE pageno = ?", p).Scan(&name); err != nil {
				name = "?"
			}
			into[name]++
		}
	}
	rounds := min(b.N, 20)
	spawnTrees, endTrees := map[string]int{}, map[string]int{}
	var spawnFrames, endFrames int
	b.ResetTimer()
	for i := 1000; i < 1000+rounds; i++ {
		truncate()
		id := spawn(i)
		p := walPages(b, path)
		spawnFrames += len(p)
		truncate()
		names(p, spawnTrees)
		finish(i, id)
		p = walPages(b, path)
		endFrames += len(p)
		truncate()
		names(p, endTrees)
	}
	b.ReportMetric(float64(spawnFrames)/float64(rounds), "frames/spawn")
	b.ReportMetric(float64(endFrames)/float64(rounds), "frames/end")
	show := func(m map[string]int) string {
		var out []string
		for k, v := range m {
			out = append(out, fmt.Sprintf("%s %.1f", k, float64(v)/float64(rounds)))
		}
		sort.Strings(out)
		return strings.Join(out, ", ")
	}
	b.Logf("pages per spawn by b-tree: %s", show(spawnTrees))
	b.Logf("pages per end by b-tree: %s", show(endTrees))
}
