package store

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The ASCII fast path of tokens gives exactly the words the folding path
// gives, for every byte mix ASCII text can hold.
func TestASCIITokensMatchFolding(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 7))
	alphabet := "aZ09_ -.,;:!?'\"()[]{}<>/\\@#$%^&*+=~`|\t\n\r\x00\x01\x7fQqXx"
	for i := 0; i < 5000; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		text := string(b)
		if got, want := asciiTokens(text), foldTokens(text); !slices.Equal(got, want) {
			t.Fatalf("%q: ascii %q, folding %q", text, got, want)
		}
	}
	if got := tokens("Deploy the_API v2, NOW!"); !slices.Equal(got, []string{"deploy", "the_api", "v2", "now"}) {
		t.Fatalf("tokens: %q", got)
	}
}

// termCounts counts the words and the query words that scoring by
// tokens(text) counts, on ASCII text (scanned in place) and on any text.
func TestTermCountsMatchTokens(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 3))
	alphabet := []string{"a", "Z", "0", "9", "_", " ", "-", ".", "\t", "\x00", "\x7f", "DEPLOY", "deploy", "Deploy_x", "v2", "é", "É", "Café", "ﬁ", "K"}
	terms := []string{"deploy", "v2", "a", "cafe", "z", "deploy_x"}
	for i := 0; i < 5000; i++ {
		text := ""
		for n := rng.IntN(30); n > 0; n-- {
			text += alphabet[rng.IntN(len(alphabet))]
		}
		if rng.IntN(2) == 0 {
			// Half the texts ASCII only: the fast path.
			text = strings.Map(func(r rune) rune {
				if r >= 0x80 {
					return ' '
				}
				return r
			}, text)
		}
		want := make([]int, len(terms))
		toks := tokens(text)
		for _, tok := range toks {
			if j := slices.Index(terms, tok); j >= 0 {
				want[j]++
			}
		}
		got := make([]int, len(terms))
		if words := termCounts(text, terms, got); words != len(toks) || !slices.Equal(got, want) {
			t.Fatalf("%q: %d words, counts %v; tokens: %d words, counts %v", text, words, got, len(toks), want)
		}
	}
}
