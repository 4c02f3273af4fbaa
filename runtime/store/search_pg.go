package store

import (
	"strings"
	"unicode"
)

// PostgreSQL search primitives. The index is a tsvector column of the
// messages table filled from the words Go's tokenizer (rank.go: tokens)
// finds, folded, so the index and the query see exactly the words SQLite's
// unicode61 index would, with no text-search parser or dictionary of the
// server in between; a GIN index answers `tsv @@ query`.

// pgMaxLexeme is the longest word PostgreSQL accepts in a tsvector (2 KB):
// a longer "word" is left out of the index (not findable on PostgreSQL).
const pgMaxLexeme = 2046

// pgMaxTSVector bounds one message's index (PostgreSQL refuses a tsvector
// past 1 MB): words past it are left out of the index.
const pgMaxTSVector = 1000000

// pgTokens are the words the index holds for text: tokens (rank.go) cut
// at '_' too, as SQLite's unicode61 tokenizer cuts there (so "deploy"
// finds "deploy_now" on both backends).
func pgTokens(text string) []string {
	var out []string
	for _, t := range tokens(text) {
		if !strings.Contains(t, "_") {
			out = append(out, t)
			continue
		}
		for _, p := range strings.Split(t, "_") {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// lexemes is a message text's index value, as tsvector input: its distinct
// folded words, each quoted. nil (SQL NULL: not indexed) for an empty text.
func lexemes(body string) any {
	if body == "" {
		return nil
	}
	seen := map[string]bool{}
	var b strings.Builder
	size := 0
	for _, t := range pgTokens(body) {
		if seen[t] || len(t) > pgMaxLexeme {
			continue
		}
		if size += len(t) + 8; size > pgMaxTSVector {
			break
		}
		seen[t] = true
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pgLexeme(t))
	}
	return b.String()
}

// pgLexeme quotes one folded word for tsvector or tsquery input, so it is
// always a literal lexeme (never an operator).
func pgLexeme(t string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(t) + "'"
}

// pgQuery turns free text into a tsquery that needs every word: the
// folded words, quoted, joined by &.
func pgQuery(text string) string {
	seen := map[string]bool{}
	var terms []string
	for _, t := range pgTokens(text) {
		if !seen[t] {
			seen[t] = true
			terms = append(terms, pgLexeme(t))
		}
	}
	return strings.Join(terms, " & ")
}

// snippetWords is how many words a snippet shows (FTS5's snippet(..., 12)).
const snippetWords = 12

// bodySnippet cuts a snippet of about snippetWords words from a message's
// text the way FTS5's snippet() does: the window holding the most distinct
// query words, centred on them, each query word marked [like this], "…"
// where text was cut.
func bodySnippet(body string, terms []string) string {
	want := make(map[string]bool, len(terms))
	for _, t := range pgTokens(strings.Join(terms, " ")) {
		want[t] = true
	}
	type word struct {
		start, end int
		term       string // the query word it is ("" = none)
	}
	var words []word
	isTok := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }
	start := -1
	add := func(a, b int) {
		w := word{start: a, end: b}
		for _, t := range tokens(body[a:b]) {
			if want[t] {
				w.term = t
				break
			}
		}
		words = append(words, w)
	}
	for i, r := range body {
		switch {
		case isTok(r) && start < 0:
			start = i
		case !isTok(r) && start >= 0:
			add(start, i)
			start = -1
		}
	}
	if start >= 0 {
		add(start, len(body))
	}
	if len(words) == 0 {
		return ""
	}
	from, to := 0, len(words)
	if len(words) > snippetWords {
		best, bestN, bestHits := 0, -1, -1
		for p := range words {
			if words[p].term == "" {
				continue
			}
			distinct := map[string]bool{}
			hits := 0
			for q := p; q < min(p+snippetWords, len(words)); q++ {
				if words[q].term != "" {
					distinct[words[q].term] = true
					hits++
				}
			}
			if len(distinct) > bestN || len(distinct) == bestN && hits > bestHits {
				best, bestN, bestHits = p, len(distinct), hits
			}
		}
		// Centre the window on its hits.
		last := best
		for q := best; q < min(best+snippetWords, len(words)); q++ {
			if words[q].term != "" {
				last = q
			}
		}
		from = best - (snippetWords-(last-best+1))/2
		from = max(0, min(from, len(words)-snippetWords))
		to = from + snippetWords
	}
	var b strings.Builder
	if from > 0 {
		b.WriteString("…")
	} else {
		b.WriteString(body[:words[0].start])
	}
	for i := from; i < to; i++ {
		w := words[i]
		if i > from {
			b.WriteString(body[words[i-1].end:w.start])
		}
		if w.term != "" {
			b.WriteString("[" + body[w.start:w.end] + "]")
		} else {
			b.WriteString(body[w.start:w.end])
		}
	}
	if to < len(words) {
		b.WriteString("…")
	} else {
		b.WriteString(body[words[to-1].end:])
	}
	return b.String()
}
