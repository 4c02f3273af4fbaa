package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

func seedSearchCorpus(t *testing.T, s *Store, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:corpus"}); err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	for i := 0; i < n; i++ {
		msgs = append(msgs, Message{SessionKey: "agent:main:corpus", Role: RoleUser, Trust: TrustUser,
			Content: Content{Text: fmt.Sprintf("note %d: deploy the service to staging, then check the logs", i)}})
	}
	if err := s.AppendMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
}

func searchKeys(t *testing.T, s *Store, q string, limit int) []string {
	t.Helper()
	var out []string
	err := s.Search(context.Background(), SearchQuery{Query: q}, func(h Hit) bool {
		out = append(out, fmt.Sprintf("%s#%d", h.Key, h.Seq))
		return len(out) < limit
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// What was seen 1: one stored message of 5 MB of "x" plus " deploy" made
// every search for "deploy" read and tokenize 5 MB, and ranked it first.
// Now it changes neither the result set nor the work of the query.
func TestSearchHugeMessageBoundedWork(t *testing.T) {
	s := openTest(t, "")
	seedSearchCorpus(t, s, 50)
	before := searchKeys(t, s, "deploy", 5)
	rows0, bytes0 := s.SearchWork()
	searchKeys(t, s, "deploy", 5)
	rows1, bytes1 := s.SearchWork()
	baseRows, baseBytes := rows1-rows0, bytes1-bytes0

	// Stored directly (older data, or a limit raised then lowered): the
	// store refuses it at the default limit, so open with a large one.
	big := strings.Repeat("x", 5<<20) + " deploy"
	ctx := context.Background()
	s.limits.MaxMessageBytes = 8 << 20
	if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:huge"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendMessage(ctx, Message{SessionKey: "agent:main:huge", Role: RoleUser, Trust: TrustUser, Content: Content{Text: big}}); err != nil {
		t.Fatal(err)
	}
	s.rank = rankStats{} // drop cached statistics so the new message counts
	rows2, bytes2 := s.SearchWork()
	after := searchKeys(t, s, "deploy", 5)
	rows3, bytes3 := s.SearchWork()
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("result set changed by one huge message:\nbefore %v\nafter  %v", before, after)
	}
	rows, bytes := rows3-rows2, bytes3-bytes2
	if rows != baseRows+1 {
		t.Fatalf("rows scored = %d, want %d (one more message)", rows, baseRows+1)
	}
	if bytes != baseBytes {
		t.Fatalf("bytes scored = %d, want %d (the huge message is scored without reading its text)", bytes, baseBytes)
	}
	// Alone, it is still found, with a short snippet.
	var hits []Hit
	if err := s.Search(ctx, SearchQuery{Query: "deploy", ExcludeKey: "agent:main:corpus"}, func(h Hit) bool { hits = append(hits, h); return true }); err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].Key != "agent:main:huge" || len(hits[0].Snippet) > 1024 {
		t.Fatalf("hits = %+v", hits)
	}
}

// What was seen 1: queries of 10 KB to 10 MB took seconds to minutes.
func TestSearchQueryLimits(t *testing.T) {
	s := openTest(t, "")
	seedSearchCorpus(t, s, 5)
	rows0, _ := s.SearchWork()
	for _, q := range []string{strings.Repeat("deploy ", 10<<10/7), strings.Repeat("x", 10<<20), strings.Repeat("a ", 40)} {
		err := s.Search(context.Background(), SearchQuery{Query: q}, func(Hit) bool { return true })
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "[limits] search_query_") {
			t.Fatalf("query of %d bytes: err = %v, want ErrTooLarge naming [limits]", len(q), err)
		}
	}
	if rows, _ := s.SearchWork(); rows != rows0 {
		t.Fatalf("refused queries scored %d rows", rows-rows0)
	}
}

// Cancellation reaches a running query: once the context is cancelled the
// search scores no further window (three windows of 100 here; cancelled at
// the first hit, it scores one).
func TestSearchCancelStopsScoring(t *testing.T) {
	old := rankWindow
	rankWindow = 100
	t.Cleanup(func() { rankWindow = old })
	s := openTest(t, "")
	seedSearchCorpus(t, s, 300)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rows0, _ := s.SearchWork()
	err := s.Search(ctx, SearchQuery{Query: "deploy"}, func(Hit) bool {
		cancel()
		return true
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if rows, _ := s.SearchWork(); rows-rows0 != 100 {
		t.Fatalf("scored %d rows, want 100 (one window, then stop)", rows-rows0)
	}
}

// What was seen 2: a 10 MB message grew the database by 37 MB. The store
// refuses a message over [limits] message_bytes, naming the limit.
func TestAppendMessageOverLimitRefused(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	s, err := Open(context.Background(), path, &Options{Limits: Limits{MaxMessageBytes: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:x"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.AppendMessage(ctx, Message{SessionKey: "agent:main:x", Role: RoleUser, Trust: TrustUser, Content: Content{Text: strings.Repeat("y", 10<<20)}})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "[limits] message_bytes") {
		t.Fatalf("err = %v", err)
	}
	var n int
	if err := s.DB().QueryRow("SELECT count(*) FROM messages").Scan(&n); err != nil || n != 0 {
		t.Fatalf("messages = %d (%v)", n, err)
	}
	s.Close()
	if testdb.Postgres() {
		return // the rest is about the SQLite file's size
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 1<<20 {
		t.Fatalf("database is %d bytes after a refused 10 MB message", fi.Size())
	}
}
