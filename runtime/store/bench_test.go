package store

import (
	"context"
	"database/sql"
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
	s := openTest(b, "")
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

// BenchmarkAppendOne is the transcript append path alone: one message per
// transaction (a run's model turn, a call's record), from `writers`
// goroutines each writing its own session, so concurrent appends share the
// writer's commits as in the fan-out. Reports the process CPU and the
// writer's statements per append.
func BenchmarkAppendOne(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchAppendOne(b, writers) })
	}
}

func benchAppendOne(b *testing.B, writers int) {
	ctx := context.Background()
	s := openTest(b, "")
	// Sessions enough that their rows span several pages, as in a store
	// that has seen a fan-out.
	for i := 0; i < 1000; i++ {
		if _, err := s.EnsureSession(ctx, Session{Key: fmt.Sprintf("agent:b:s%04d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	per := b.N/writers + 1
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0, w0 := cpuTime(), s.WriteStats()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("agent:b:s%04d", w*37%1000)
			for i := 0; i < per; i++ {
				m := Message{SessionKey: key, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "turn " + fmt.Sprint(i)}, TokensIn: 3, TokensOut: 2}
				if _, err := s.AppendMessage(ctx, m); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(writers*per), "cpu-µs/op")
	wst := s.WriteStats()
	b.ReportMetric(float64(wst.Commits-w0.Commits)/float64(writers*per), "commits/op")
	b.ReportMetric(float64(wst.Statements-w0.Statements)/float64(writers*per), "stmts/op")
}

// BenchmarkAppendInTx is the statements of an append alone: 200 appends
// of one message each (to 200 of 1,000 sessions) inside one write
// transaction, so the commit is a small share. Reports the process CPU and
// the writer's statements per append.
func BenchmarkAppendInTx(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, "")
	for i := 0; i < 1000; i++ {
		if _, err := s.EnsureSession(ctx, Session{Key: fmt.Sprintf("agent:b:s%04d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	const per = 200
	b.ResetTimer()
	cpu0, w0 := cpuTime(), s.WriteStats()
	for i := 0; i < b.N; i += per {
		err := s.Tx(ctx, func(tx *sql.Tx) error {
			for j := 0; j < per; j++ {
				m := []Message{{SessionKey: fmt.Sprintf("agent:b:s%04d", (i+j)*7%1000), Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "turn"}, TokensIn: 3, TokensOut: 2}}
				if err := s.appendMessagesTx(ctx, tx, m, s.nowMS()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	n := (b.N + per - 1) / per * per
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-µs/op")
	wst := s.WriteStats()
	b.ReportMetric(float64(wst.Statements-w0.Statements)/float64(n), "stmts/op")
}
