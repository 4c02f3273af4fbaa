package store

import (
	"context"
	"fmt"
	"testing"
)

// Ranking windows partition the matches newest first: every match is
// yielded once, each window's messages are all newer than the next
// window's, and a last window that is exactly full ends the search. On
// SQLite a window is one statement (windowRankSQL), on PostgreSQL two.
func TestSearchWindowsPartitionMatches(t *testing.T) {
	defer func(w int) { rankWindow = w }(rankWindow)
	rankWindow = 10
	for _, matches := range []int{30, 35, 7} {
		t.Run(fmt.Sprint(matches), func(t *testing.T) {
			s := openTest(t, "")
			ctx := context.Background()
			if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:w"}); err != nil {
				t.Fatal(err)
			}
			var batch []Message
			for i := 0; i < matches; i++ {
				// Varied lengths and counts so scores differ within a window.
				text := fmt.Sprintf("alpha %d", i)
				for j := 0; j < i%4; j++ {
					text += " alpha filler"
				}
				batch = append(batch, Message{SessionKey: "agent:main:w", Role: RoleUser, Trust: TrustUser, Content: Content{Text: text}},
					Message{SessionKey: "agent:main:w", Role: RoleUser, Trust: TrustUser, Content: Content{Text: "beta only"}})
			}
			if err := s.AppendMessages(ctx, batch); err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			err := s.Search(ctx, SearchQuery{Query: "alpha"}, func(h Hit) bool {
				seqs = append(seqs, h.Seq)
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(seqs) != matches {
				t.Fatalf("%d hits, want %d: %v", len(seqs), matches, seqs)
			}
			seen := map[int64]bool{}
			for i, q := range seqs {
				if seen[q] || q%2 != 1 {
					t.Fatalf("hit %d: seq %d repeated or not a match: %v", i, q, seqs)
				}
				seen[q] = true
			}
			for w := 0; (w+1)*rankWindow < len(seqs); w++ {
				lo := seqs[w*rankWindow]
				for _, q := range seqs[w*rankWindow : (w+1)*rankWindow] {
					lo = min(lo, q)
				}
				for _, q := range seqs[(w+1)*rankWindow:] {
					if q >= lo {
						t.Fatalf("window %d reaches seq %d, older windows hold %d: %v", w, lo, q, seqs)
					}
				}
			}
		})
	}
}
