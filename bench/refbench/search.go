package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// searchBench seeds one store through the given sizes (ascending; the corpus
// continues, so the store at each size holds exactly what seedMessages(size)
// of runtime/store/bench_test.go writes) and at each size runs queries
// searches of BenchmarkSearch100k's mix: the first 5 hits, best first, as
// sessions_search asks for them.
func searchBench(tmp string, sizes []int, queries int) error {
	ctx := context.Background()
	path := filepath.Join(tmp, "search.db")
	s, err := store.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	sd := newSeeder()
	mix := searchQueries()

	type result struct {
		size                int
		seed                time.Duration // cumulative seeding time
		rate, lastRate      float64       // msgs/s overall, and over the last 100k
		lat                 []time.Duration
		perQuery            map[string][]time.Duration
		hitsPerQuery        map[string]int
		load, seedLoad      float64
		dbBytes, walBytes   int64
		firstPassMax        time.Duration
		firstPassMaxQuery   string
		firstPassPerQueryMs map[string]float64
	}
	var results []result
	var seedTotal time.Duration
	done := 0
	for _, size := range sizes {
		seedLoad := waitQuiet(fmt.Sprintf("seed to %d messages", size))
		fmt.Printf("\nseeding to %d messages (sessions of 100, one AppendMessages transaction each)...\n", size)
		var chunkStart = time.Now()
		chunkDone := done
		var lastRate float64
		t0 := time.Now()
		err := sd.seedTo(ctx, s, size, func(n int) {
			if n%100_000 == 0 {
				now := time.Now()
				lastRate = float64(n-chunkDone) / now.Sub(chunkStart).Seconds()
				fmt.Printf("  %8d messages  %6.1fs  last 100k at %6.0f msgs/s\n", n, (seedTotal + now.Sub(t0)).Seconds(), lastRate)
				chunkStart, chunkDone = now, n
			}
		})
		if err != nil {
			return fmt.Errorf("seeding: %w", err)
		}
		seedTotal += time.Since(t0)
		done = size

		load := waitQuiet(fmt.Sprintf("search at %d messages", size))
		r := result{size: size, seed: seedTotal, rate: float64(size) / seedTotal.Seconds(), lastRate: lastRate,
			perQuery: map[string][]time.Duration{}, hitsPerQuery: map[string]int{}, firstPassPerQueryMs: map[string]float64{},
			load: load, seedLoad: seedLoad}
		r.dbBytes, r.walBytes = fileSize(path), fileSize(path+"-wal")
		search := func(q string) (time.Duration, int, error) {
			t0 := time.Now()
			n := 0
			err := s.Search(ctx, store.SearchQuery{Query: q}, func(store.Hit) bool { n++; return n < 5 })
			return time.Since(t0), n, err
		}
		// One warm-up pass over the mix (the benchmark's b.N ramp-up does
		// the same); its times are reported separately as cold-ish.
		for _, q := range mix {
			d, n, err := search(q)
			if err != nil {
				return fmt.Errorf("search %q: %w", q, err)
			}
			r.hitsPerQuery[q] = n
			r.firstPassPerQueryMs[q] = ms(d)
			if d > r.firstPassMax {
				r.firstPassMax, r.firstPassMaxQuery = d, q
			}
		}
		for i := 0; i < queries; i++ {
			q := mix[i%len(mix)]
			d, _, err := search(q)
			if err != nil {
				return fmt.Errorf("search %q: %w", q, err)
			}
			r.lat = append(r.lat, d)
			r.perQuery[q] = append(r.perQuery[q], d)
		}
		results = append(results, r)
		fmt.Printf("  search at %d: p50 %.2f ms, p95 %.2f ms\n", size, ms(p50(r.lat)), ms(p95(r.lat)))
	}

	fmt.Printf("\n## sessions_search through the store (runtime/store Search, first 5 hits), BenchmarkSearch100k's corpus and query mix\n\n")
	// load: at the start of the searches (seed-load: at the start of seeding
	// to that size); seed-s and seed msgs/s are cumulative from an empty store.
	fmt.Printf("%-10s %10s %12s %14s %9s %9s %9s %9s %10s %6s %9s\n", "messages", "seed-s", "seed msgs/s", "last-100k/s", "p50-ms", "p95-ms", "mean-ms", "max-ms", "db-MB", "load", "seed-load")
	for _, r := range results {
		fmt.Printf("%-10d %10.1f %12.0f %14.0f %9.2f %9.2f %9.2f %9.2f %10.1f %6.2f %9.2f\n", r.size, r.seed.Seconds(), r.rate, r.lastRate,
			ms(p50(r.lat)), ms(p95(r.lat)), ms(mean(r.lat)), ms(sorted(r.lat)[len(r.lat)-1]), float64(r.dbBytes+r.walBytes)/(1<<20), r.load, r.seedLoad)
	}
	for _, r := range results {
		fmt.Printf("\nper query at %d messages (%d timed runs of each; first = the warm-up run):\n", r.size, queries/len(mix))
		fmt.Printf("  %-38s %6s %9s %9s %9s\n", "query", "hits", "first-ms", "p50-ms", "p95-ms")
		for _, q := range mix {
			fmt.Printf("  %-38s %6d %9.2f %9.2f %9.2f\n", q, r.hitsPerQuery[q], r.firstPassPerQueryMs[q], ms(p50(r.perQuery[q])), ms(p95(r.perQuery[q])))
		}
	}
	fmt.Println()
	for _, r := range results {
		v := "MET"
		if p95(r.lat) > 20*time.Millisecond {
			v = "NOT MET"
		}
		fmt.Printf("target sessions_search p95 ≤ 20 ms at %d messages: %.2f ms: %s\n", r.size, ms(p95(r.lat)), v)
	}
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
