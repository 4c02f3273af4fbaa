package main

// The seeding loop below is seedMessages of runtime/store/bench_test.go
// (same session layout, corpus seed 3), made resumable: seeding to 100k and
// then to 1M writes exactly the rows seedMessages(1_000_000) writes. The
// corpus itself is internal/benchcorpus, shared with that benchmark.

import (
	"context"
	"fmt"

	"github.com/sessionplane/sessionplane/internal/benchcorpus"

	"github.com/sessionplane/sessionplane/runtime/store"
)

func searchQueries() []string { return benchcorpus.Queries() }

// seeder is seedMessages of runtime/store/bench_test.go (n messages over
// n/100 sessions, corpus seed 3) made resumable: seeding to 100k and then
// to 1M writes exactly the rows seedMessages(1_000_000) writes.
type seeder struct {
	c    *benchcorpus.Corpus
	next int // next session index
}

func newSeeder() *seeder { return &seeder{c: benchcorpus.New(3)} }

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
			msgs[j] = store.Message{SessionKey: key, Role: store.RoleAssistant, Trust: store.TrustModel, Content: store.Content{Text: sd.c.Sentence(20)}}
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
