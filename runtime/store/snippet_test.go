package store

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// ftsSnippet gives exactly FTS5's snippet() (the SQL it replaces on
// SQLite) for random ASCII messages and queries: repeated words, case,
// sentence ends, punctuation runs, short and long messages, repeated query
// words.
func TestFTSSnippetMatchesFTS5(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "sp.db"))
	ctx := context.Background()
	if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:snip"}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(21, 4))
	vocab := []string{"deploy", "Deploy", "DEPLOY", "cache", "db7", "x", "index", "the", "a", "9", "logs"}
	seps := []string{" ", " ", " ", ", ", ". ", ": ", ".", " - ", "\n", ".\t", "  ", "!", " (", ") ", "_", ":", "$", "#", "'", "/", "\x01", "~", "\r\n", ". \r"}
	var msgs []Message
	for i := 0; i < 1500; i++ {
		var b strings.Builder
		if rng.IntN(4) == 0 {
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		n := 1 + rng.IntN(40)
		if rng.IntN(3) == 0 {
			n = 1 + rng.IntN(12)
		}
		for j := 0; j < n; j++ {
			if j > 0 {
				b.WriteString(seps[rng.IntN(len(seps))])
			}
			b.WriteString(vocab[rng.IntN(len(vocab))])
		}
		if rng.IntN(3) == 0 {
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		msgs = append(msgs, Message{SessionKey: "agent:main:snip", Role: RoleUser, Trust: TrustUser, Content: Content{Text: b.String()}})
	}
	if err := s.AppendMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	queries := []string{"deploy", "cache", "x", "9", "logs", "deploy cache", "Deploy x", "x x", "deploy DEPLOY",
		"index the a", "db7 logs deploy", "cache 9 x logs", "the"}
	compared := 0
	for _, q := range queries {
		words := queryWords(q)
		rows, err := s.DB().QueryContext(ctx, `SELECT m.body, snippet(messages_fts, 0, '[', ']', '…', 12)
			FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH ?`, ftsQuery(q))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var body, want string
			if err := rows.Scan(&body, &want); err != nil {
				t.Fatal(err)
			}
			if !ftsSnippetOK(body, words) {
				t.Fatalf("%q: not computable in Go", body)
			}
			if got := ftsSnippet(body, words); got != want {
				t.Fatalf("query %q, body %q:\n go   %q\n fts5 %q", q, body, got, want)
			}
			compared++
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if compared < 1000 {
		t.Fatalf("only %d snippets compared", compared)
	}
	for _, c := range []struct {
		body  string
		words []string
		ok    bool
	}{
		{"plain text", []string{"plain"}, true},
		{"café", []string{"cafe"}, false},
		{"run deploy_now", []string{"deploy_now"}, false},
		{"text", nil, false},
	} {
		if got := ftsSnippetOK(c.body, c.words); got != c.ok {
			t.Errorf("ftsSnippetOK(%q, %q) = %v, want %v", c.body, c.words, got, c.ok)
		}
	}
}
