package store

import (
	"math/rand/v2"
	"slices"
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
