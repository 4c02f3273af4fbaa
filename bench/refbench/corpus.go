package main

// The corpus generator and the seeding loop below are copied from
// runtime/store/bench_test.go (test code, so not importable): the same Zipf
// distribution, vocabulary, seeds, session layout and query mix as
// BenchmarkSearch100k. Keep them identical to that file; seedMessages only
// returns errors instead of calling b.Fatal and lets the caller resume (to
// measure 100k and then continue the same corpus to 1M).

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// corpus draws words from a Zipf distribution over a 5,000-word vocabulary
// (rank 1 is the most common), like natural text: a few words are in most
// messages, most words are rare.
type corpus struct {
	r    *rand.Rand
	zipf *rand.Zipf
}

func newCorpus(seed uint64) *corpus {
	r := rand.New(rand.NewPCG(seed, seed+1))
	return &corpus{r: r, zipf: rand.NewZipf(r, 1.07, 2, 4999)}
}

// word returns the vocabulary word of a rank: "w<rank>" with a readable stem.
func word(rank uint64) string {
	stems := []string{"deploy", "rollback", "checkpoint", "database", "latency", "review", "cache", "index", "agent", "policy"}
	return fmt.Sprintf("%s%d", stems[rank%uint64(len(stems))], rank)
}

func (c *corpus) sentence(n int) string {
	b := make([]byte, 0, n*10)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, word(c.zipf.Uint64())...)
	}
	return string(b)
}

// searchQueries is BenchmarkSearch100k's mix: the most common words (in
// ~15-40% of messages), mid-frequency words, rare words, and two-word
// queries of each kind.
func searchQueries() []string {
	return []string{word(2), word(3), word(5) + " " + word(2), word(40), word(120), word(40) + " " + word(7),
		word(900), word(2500), word(300) + " " + word(1200), word(4)}
}

// seeder is seedMessages of runtime/store/bench_test.go (n messages over
// n/100 sessions, corpus seed 3) made resumable: seeding to 100k and then
// to 1M writes exactly the rows seedMessages(1_000_000) writes.
type seeder struct {
	c    *corpus
	next int // next session index
}

func newSeeder() *seeder { return &seeder{c: newCorpus(3)} }

// seedTo appends sessions of 100 messages until the store holds n messages.
func (sd *seeder) seedTo(ctx context.Context, s *store.Store, n int, progress func(done int)) error {
	const per = 100
	for ; sd.next < n/per; sd.next++ {
		key := fmt.Sprintf("agent:bench:s%06d", sd.next)
		if _, err := s.EnsureSession(ctx, store.Session{Key: key}); err != nil {
			return err
		}
		msgs := make([]store.Message, per)
		for j := range msgs {
			msgs[j] = store.Message{SessionKey: key, Role: store.RoleAssistant, Trust: store.TrustModel, Content: store.Content{Text: sd.c.sentence(20)}}
		}
		if err := s.AppendMessages(ctx, msgs); err != nil {
			return err
		}
		if progress != nil && (sd.next+1)%1000 == 0 {
			progress((sd.next + 1) * per)
		}
	}
	return nil
}
