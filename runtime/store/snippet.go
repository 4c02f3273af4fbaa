package store

import "strings"

// FTS5's snippet(messages_fts, 0, '[', ']', '…', 12), computed in Go for
// the common case: an ASCII message (already read to rank it) and a query
// of ASCII letters and digits only. On such text the unicode61 tokenizer's
// words are the runs of [A-Za-z0-9], lower-cased, and each query word is a
// one-token phrase, so the algorithm of SQLite's fts5_aux.c (best window by
// fts5SnippetScore, sentence starts, coalesced instances, highlighting)
// gives the same bytes without a MATCH statement per hit, which seeks
// every query word in every FTS5 segment again. Anything else still goes
// to FTS5 (ftsSnippetOK says which); TestFTSSnippetMatchesFTS5 compares
// both on random text.

// ftsSnippetOK reports whether ftsSnippet gives FTS5's snippet for this
// body and these query words (queryWords, as typed).
func ftsSnippetOK(body string, words []string) bool {
	if len(words) == 0 || !isASCII(body) {
		return false
	}
	for _, w := range words {
		for i := 0; i < len(w); i++ {
			c := w[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

// ftsSnippet is snippet(…, '[', ']', '…', 12) of body for a MATCH of the
// quoted words (one phrase per word, in order, repeats included), where
// ftsSnippetOK(body, words).
func ftsSnippet(body string, words []string) string {
	const nToken = snippetWords
	type span struct{ start, end int }
	type inst struct{ phrase, pos int }
	phrases := make([]string, len(words))
	for i, w := range words {
		phrases[i] = strings.ToLower(w)
	}
	var toks []span
	var insts []inst // by position, then phrase (FTS5's xInst order)
	var firsts []int // positions starting a sentence (fts5SentenceFinderCb)
	isTok := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(body); {
		if !isTok(body[i]) {
			i++
			continue
		}
		j := i
		for j < len(body) && isTok(body[j]) {
			j++
		}
		pos := len(toks)
		if pos == 0 {
			firsts = append(firsts, 0)
		} else {
			k := i - 1
			for k >= 0 && (body[k] == ' ' || body[k] == '\t' || body[k] == '\n' || body[k] == '\r') {
				k--
			}
			if k != i-1 && k >= 0 && (body[k] == '.' || body[k] == ':') {
				firsts = append(firsts, pos)
			}
		}
		for p, ph := range phrases {
			if equalLowerASCII(body[i:j], ph) {
				insts = append(insts, inst{p, pos})
			}
		}
		toks = append(toks, span{i, j})
		i = j
	}
	nDoc := len(toks)
	seen := make([]bool, len(phrases))
	// score is fts5SnippetScore: 1000 for each phrase's first instance in
	// [from, from+nToken), 1 for each further one, and the window start
	// that centres those instances.
	score := func(from int) (int, int) {
		clear(seen)
		n, first, last := 0, -1, 0
		for _, in := range insts {
			if in.pos >= from && in.pos < from+nToken {
				if seen[in.phrase] {
					n++
				} else {
					n += 1000
				}
				seen[in.phrase] = true
				if first < 0 {
					first = in.pos
				}
				last = in.pos + 1
			}
		}
		adj := first - (nToken-(last-first))/2
		if adj+nToken > nDoc {
			adj = nDoc - nToken
		}
		return n, max(adj, 0)
	}
	best, bestStart := 0, 0
	for _, in := range insts {
		if n, adj := score(in.pos); n > best {
			best, bestStart = n, adj
		}
		if len(firsts) > 0 && nDoc > nToken {
			jj := 0
			for ; jj < len(firsts)-1; jj++ {
				if firsts[jj+1] > in.pos {
					break
				}
			}
			if f := firsts[jj]; f < in.pos {
				n, _ := score(f)
				if f == 0 {
					n += 120
				} else {
					n += 100
				}
				if n > best {
					best, bestStart = n, f
				}
			}
		}
	}

	// Coalesced instances (fts5CInstIter): overlapping ones merge.
	next, itStart, itEnd := 0, -1, -1
	advance := func() {
		itStart, itEnd = -1, -1
		for ; next < len(insts); next++ {
			p := insts[next].pos
			if itStart < 0 {
				itStart, itEnd = p, p
			} else if p <= itEnd {
				itEnd = max(itEnd, p)
			} else {
				break
			}
		}
	}
	advance()
	rangeStart, rangeEnd := bestStart, bestStart+nToken-1
	var b strings.Builder
	if bestStart > 0 {
		b.WriteString("…")
	}
	for itStart >= 0 && itStart < bestStart {
		advance()
	}
	off, open := 0, false
	for pos, t := range toks {
		if pos < rangeStart || pos > rangeEnd {
			continue
		}
		if rangeStart != 0 && pos == rangeStart {
			off = t.start
		}
		if open && (pos <= itStart || itStart < 0) && t.start > off {
			b.WriteString("]")
			open = false
		}
		if pos == itStart && !open {
			b.WriteString(body[off:t.start])
			b.WriteString("[")
			off, open = t.start, true
		}
		if pos == itEnd {
			if !open {
				b.WriteString("[")
				open = true
			}
			b.WriteString(body[off:t.end])
			off = t.end
			advance()
		}
		if pos == rangeEnd {
			if open {
				if itStart >= 0 && pos >= itStart {
					b.WriteString(body[off:t.end])
					off = t.end
				}
				b.WriteString("]")
				open = false
			}
			b.WriteString(body[off:t.end])
			off = t.end
		}
	}
	if open {
		b.WriteString("]")
	}
	if rangeEnd >= nDoc-1 {
		b.WriteString(body[off:])
	} else {
		b.WriteString("…")
	}
	return b.String()
}
