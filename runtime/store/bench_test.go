package store

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/benchcorpus"
	"github.com/sessionplane/sessionplane/internal/testdb"
)

// BenchmarkAppendMessages appends in batches of 100 (one transaction each).
func BenchmarkAppendMessages(b *testing.B) {
	s, err := Open(context.Background(), testdb.DSN(b, "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	s.EnsureSession(ctx, Session{Key: "agent:b:main"})
	c := benchcorpus.New(1)
	texts := make([]string, 1000)
	for i := range texts {
		texts[i] = c.Sentence(20)
	}
	batch := make([]Message, 100)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = Message{SessionKey: "agent:b:main", Role: RoleUser, Trust: TrustUser, Content: Content{Text: texts[(i*100+j)%len(texts)]}}
		}
		if err := s.AppendMessages(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/time.Since(start).Seconds(), "msgs/s")
}

// seedMessages fills a store with n messages over n/100 sessions.
func seedMessages(b *testing.B, s *Store, n int) {
	ctx := context.Background()
	c := benchcorpus.New(3)
	const per = 100
	for i := 0; i < n/per; i++ {
		key := fmt.Sprintf("agent:bench:s%06d", i)
		if _, err := s.EnsureSession(ctx, Session{Key: key}); err != nil {
			b.Fatal(err)
		}
		msgs := make([]Message, per)
		for j := range msgs {
			msgs[j] = Message{SessionKey: key, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: c.Sentence(20)}}
		}
		if err := s.AppendMessages(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSearch100k measures sessions_search's query (first 5 hits, best
// first) over 100,000 messages and reports p50/p95 latency.
func BenchmarkSearch100k(b *testing.B) {
	s, err := Open(context.Background(), testdb.DSN(b, "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	seedMessages(b, s, 100_000)
	// A mix: the most common words (in ~15-40% of messages), mid-frequency
	// words, rare words, and two-word queries of each kind.
	queries := benchcorpus.Queries()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := queries[i%len(queries)]
		t0 := time.Now()
		n := 0
		if err := s.Search(ctx, SearchQuery{Query: q}, func(Hit) bool { n++; return n < 5 }); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}

// BenchmarkFinishRunAndClaim is the finish side of a spawn in the writer:
// a run's end with its final answer and announce, and the claim of the
// next queued run, in chains (each chain ends a run and claims its
// successor) of which `chains` run at once, so concurrent ends share
// commits as in the fan-out. cpu-µs/op is the process CPU per end.
func BenchmarkFinishRunAndClaim(b *testing.B) {
	for _, chains := range []int{1, 16} {
		b.Run(fmt.Sprintf("chains=%d", chains), func(b *testing.B) { benchFinish(b, chains) })
	}
}

func benchFinish(b *testing.B, chains int) {
	ctx := context.Background()
	s, err := Open(ctx, testdb.DSN(b, "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const req = "agent:b:main"
	if _, err := s.EnsureSession(ctx, Session{Key: req}); err != nil {
		b.Fatal(err)
	}
	per := b.N/chains + 1
	id := func(c, i int) string { return fmt.Sprintf("r%03d-%07d", c, i) }
	for c := 0; c < chains; c++ {
		for i := 0; i <= per; i++ {
			state := RunQueued
			if i == 0 {
				state = RunRunning
			}
			child := fmt.Sprintf("agent:b:subagent:%03d-%07d", c, i)
			if err := s.CreateRun(ctx, &Session{Key: child}, nil, &Run{ID: id(c, i), Kind: "spawn", ChildKey: child, RequesterKey: req, AgentID: "b", State: state}); err != nil {
				b.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0, w0 := cpuTime(), s.WriteStats()
	for c := 0; c < chains; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				child := fmt.Sprintf("agent:b:subagent:%03d-%07d", c, i)
				final := Message{SessionKey: child, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "the answer to task " + id(c, i)}, TokensIn: 10, TokensOut: 5}
				done, claimed, err := s.FinishRunAndClaim(ctx, id(c, i), Outcome{State: RunOK, ResultText: "ok", SessionStatus: "done", Messages: []Message{final}},
					&Announce{RequesterKey: req, Status: RunOK, Body: "Result: ok"}, &NextClaim{RunID: id(c, i+1), Instance: "bench", PID: 1})
				if err != nil || !done || claimed == nil {
					b.Errorf("finish %s: done %v claimed %v err %v", id(c, i), done, claimed != nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(chains*per), "cpu-µs/op")
	w := s.WriteStats()
	b.ReportMetric(float64(w.Commits-w0.Commits)/float64(chains*per), "commits/op")
	b.ReportMetric(float64(w.Statements-w0.Statements)/float64(chains*per), "stmts/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
