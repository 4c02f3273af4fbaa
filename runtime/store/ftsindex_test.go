package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"sync"
	"testing"
)

// indexHits is every session key with a hit for query, sorted.
func indexHits(t *testing.T, s *Store, query string) []string {
	t.Helper()
	var keys []string
	if err := s.Search(context.Background(), SearchQuery{Query: query}, func(h Hit) bool {
		keys = append(keys, fmt.Sprintf("%s#%d", h.Key, h.Seq))
		return true
	}); err != nil {
		t.Fatalf("search %q: %v", query, err)
	}
	sort.Strings(keys)
	return keys
}

// The search index is filled at the end of each write transaction
// (ftsindex.go, migration 0015): every message with text that a committed
// transaction inserted is found, whichever path inserted it (appends that
// share one transaction, several appends in one transaction, a fork's
// copy); a message inserted and deleted before its transaction ends
// leaves nothing behind; a rolled-back write leaves nothing; and the index
// holds exactly the messages with text.
func TestEveryMessagePathIsIndexed(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	for _, k := range []string{"agent:main:a", "agent:main:b", "agent:main:gone"} {
		if _, err := s.EnsureSession(ctx, Session{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	msg := func(key, text string) Message {
		return Message{SessionKey: key, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: text}}
	}
	// Concurrent appends: the writer puts them in shared transactions.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := []string{"agent:main:a", "agent:main:b"}[w%2]
			for i := 0; i < 5; i++ {
				if _, err := s.AppendMessage(ctx, msg(key, fmt.Sprintf("zebra%d quokka", w))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// Several appends, a message without text, and a message inserted and
	// deleted, all in one transaction.
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		now := s.nowMS()
		if err := s.appendMessagesTx(ctx, tx, []Message{msg("agent:main:a", "walrus one"), msg("agent:main:b", "walrus two")}, now); err != nil {
			return err
		}
		if err := s.appendMessagesTx(ctx, tx, []Message{{SessionKey: "agent:main:a", Role: RoleTool, Trust: TrustExternal, Content: Content{ToolResults: []ToolResult{{CallID: "c", Name: "x", Content: "walrus hidden"}}}}}, now); err != nil {
			return err
		}
		if err := s.appendMessagesTx(ctx, tx, []Message{msg("agent:main:gone", "walrus deleted")}, now); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, "DELETE FROM messages WHERE session_key = ?", "agent:main:gone")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// A write that fails is rolled back, its message with it.
	bad := []Message{msg("agent:main:a", "narwhal lost"), msg("agent:main:missing", "narwhal lost too")}
	if err := s.AppendMessages(ctx, bad); err == nil {
		t.Fatal("an append to a missing session succeeded")
	}
	if _, err := s.ForkSession(ctx, Session{Key: "agent:main:fork", ForkedFrom: "agent:main:a"}); err != nil {
		t.Fatal(err)
	}

	for w := 0; w < 8; w++ {
		got := indexHits(t, s, fmt.Sprintf("zebra%d", w))
		key := []string{"agent:main:a", "agent:main:b"}[w%2]
		var n, forked int
		for _, g := range got {
			if len(g) > len(key) && g[:len(key)+1] == key+"#" {
				n++
			}
			if len(g) > 15 && g[:15] == "agent:main:fork" {
				forked++
			}
		}
		if n != 5 || (key == "agent:main:a" && forked != 5) || len(got) != n+forked {
			t.Fatalf("zebra%d: hits %v, want 5 in %s (and their 5 forked copies when in a)", w, got, key)
		}
	}
	if got := indexHits(t, s, "walrus"); len(got) != 3 { // a's, b's, and a's copy in the fork
		t.Fatalf("walrus: hits %v, want 3 (the tool result is not indexed, the deleted message is gone)", got)
	}
	if got := indexHits(t, s, "narwhal"); len(got) != 0 {
		t.Fatalf("narwhal: hits %v of a rolled-back write", got)
	}
	if s.Backend() == BackendSQLite {
		// The index is sound, and indexes exactly the messages with text
		// (FTS5's check against the content table would also want the
		// messages without text, which were never indexed: 0005).
		if _, err := s.DB().ExecContext(ctx, "INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')"); err != nil {
			t.Fatalf("the search index is damaged: %v", err)
		}
		var missing, extra int
		if err := s.DB().QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM messages m WHERE body != '' AND NOT EXISTS (SELECT 1 FROM messages_fts_docsize d WHERE d.id = m.id)),
			(SELECT count(*) FROM messages_fts_docsize d WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.id AND body != ''))`).Scan(&missing, &extra); err != nil {
			t.Fatal(err)
		}
		if missing != 0 || extra != 0 {
			t.Fatalf("search index: %d messages with text not indexed, %d entries of no such message", missing, extra)
		}
	}
}

// Indexed at the end of its transaction, a batch of appends writes one
// FTS5 segment, not one per INSERT: the structure record's segment count
// grows by at most one per commit.
func TestAppendsShareOneIndexSegment(t *testing.T) {
	s := openTest(t, "")
	if s.Backend() != BackendSQLite {
		t.Skip("FTS5 segments are SQLite's; PostgreSQL indexes in the INSERT")
	}
	ctx := context.Background()
	if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:a"}); err != nil {
		t.Fatal(err)
	}
	rows := func() int {
		var n int
		if err := s.DB().QueryRowContext(ctx, "SELECT count(*) FROM messages_fts_data").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := rows()
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		for i := 0; i < 20; i++ { // 20 INSERT statements: 20 segments with the trigger
			m := []Message{{SessionKey: "agent:main:a", Role: RoleUser, Trust: TrustUser, Content: Content{Text: fmt.Sprintf("word%d common", i)}}}
			if err := s.appendMessagesTx(ctx, tx, m, s.nowMS()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// One new segment is one leaf row (its terms fit a page) plus the
	// structure and averages records rewritten in place.
	if grew := rows() - before; grew > 2 {
		t.Fatalf("messages_fts_data grew by %d rows for one transaction of 20 appends, want one segment (≤ 2 rows)", grew)
	}
	if got := indexHits(t, s, "common"); len(got) != 20 {
		t.Fatalf("common: %d hits, want 20", len(got))
	}
}

// A process of an older release sharing the SQLite file (still running
// while another was upgraded) inserts messages without naming
// fts_deferred: the insert trigger (0017) indexes them at once, as that
// release expects, between and beside this release's appends, which the
// trigger leaves to their transaction's end. Every message with text is
// indexed exactly once.
func TestOlderReleaseWritesAreIndexed(t *testing.T) {
	s := openTest(t, "")
	if s.Backend() != BackendSQLite {
		t.Skip("SQLite's triggers; on PostgreSQL every release's INSERT carries the search vector")
	}
	ctx := context.Background()
	key := "agent:main:a"
	if _, err := s.EnsureSession(ctx, Session{Key: key}); err != nil {
		t.Fatal(err)
	}
	// The older release: its own connection to the file, schema 14's
	// INSERT of a message (and its seq bump), in a transaction of its own.
	old, err := sql.Open("sqlite", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldAppend := func(text string) {
		t.Helper()
		tx, err := old.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var seq int64
		if err := tx.QueryRowContext(ctx, `UPDATE sessions SET message_count = message_count + 1 WHERE key = ? RETURNING message_count`, key).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages (session_key, seq, role, content, body, trust, tokens_in, tokens_out, created_at)
			VALUES (?, ?, 'assistant', ?, ?, 'model_generated', 0, 0, 1)`, key, seq, `{"text":"`+text+`"}`, text); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	newAppend := func(text string) {
		t.Helper()
		if _, err := s.AppendMessage(ctx, Message{SessionKey: key, Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: text}}); err != nil {
			t.Fatal(err)
		}
	}
	newAppend("okapi new one")
	oldAppend("okapi old one")
	newAppend("okapi new two")
	oldAppend("okapi old two")
	oldAppend("okapi old three")
	newAppend("okapi new three")
	if got := indexHits(t, s, "okapi"); len(got) != 6 {
		t.Fatalf("okapi: hits %v, want all 6 messages (3 by the older release)", got)
	}
	if got := indexHits(t, s, "old"); len(got) != 3 {
		t.Fatalf("old: hits %v, want the older release's 3", got)
	}
	if _, err := s.DB().ExecContext(ctx, "INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')"); err != nil {
		t.Fatalf("the search index is damaged: %v", err)
	}
	var entries, deferred int
	if err := s.DB().QueryRowContext(ctx, `SELECT (SELECT count(*) FROM messages_fts_docsize),
		(SELECT count(*) FROM messages WHERE fts_deferred = 1)`).Scan(&entries, &deferred); err != nil {
		t.Fatal(err)
	}
	if entries != 6 || deferred != 3 {
		t.Fatalf("%d index entries for 6 messages, %d marked for the transaction's end (want 6 and 3)", entries, deferred)
	}
}
