// Package benchcorpus generates the text the search and append benchmarks
// use (runtime/store's go test benchmarks and bench/refbench): words drawn
// from a Zipf distribution over a 5,000-word vocabulary, like natural text
// (a few words are in most messages, most words are rare), and the query
// mix that goes with it. One definition, so both measure the same corpus.
package benchcorpus

import (
	"fmt"
	"math/rand/v2"
)

// Corpus draws words; it is deterministic for a seed and not safe for
// concurrent use.
type Corpus struct {
	zipf *rand.Zipf
}

// New returns a corpus with the given seed.
func New(seed uint64) *Corpus {
	r := rand.New(rand.NewPCG(seed, seed+1))
	return &Corpus{zipf: rand.NewZipf(r, 1.07, 2, 4999)}
}

// Word returns the vocabulary word of a rank (rank 0 is the most common):
// a readable stem and the rank, e.g. "checkpoint2".
func Word(rank uint64) string {
	stems := []string{"deploy", "rollback", "checkpoint", "database", "latency", "review", "cache", "index", "agent", "policy"}
	return fmt.Sprintf("%s%d", stems[rank%uint64(len(stems))], rank)
}

// Sentence returns n words separated by spaces.
func (c *Corpus) Sentence(n int) string {
	b := make([]byte, 0, n*10)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, Word(c.zipf.Uint64())...)
	}
	return string(b)
}

// Queries is the search mix: the most common words (in ~15-40% of
// messages), mid-frequency words, rare words, and two-word queries of each
// kind.
func Queries() []string {
	return []string{Word(2), Word(3), Word(5) + " " + Word(2), Word(40), Word(120), Word(40) + " " + Word(7),
		Word(900), Word(2500), Word(300) + " " + Word(1200), Word(4)}
}
