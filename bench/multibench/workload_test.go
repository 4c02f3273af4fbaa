package main

import (
	"context"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// The end-of-phase check must fail a run that replied twice or not at all:
// that is what keeps a fast wrong result out of the table.
func TestCheckRepliesCountsOneReplyPerRun(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, testdb.DSN(t, "check.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reply := func(key, text string) {
		t.Helper()
		if _, err := db.EnsureSession(ctx, store.Session{Key: key}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.AppendMessage(ctx, store.Message{SessionKey: key, Role: store.RoleAssistant, Trust: store.TrustModel, Content: store.Content{Text: text}}); err != nil {
			t.Fatal(err)
		}
	}
	reply("agent:main:bench-c0", "bench reply: turn 0 of client 0")
	reply("agent:main:bench-c0", "bench reply: turn 0 of client 0")
	reply("agent:main:bench-c1", "bench reply: turn 0 of client 1")
	reply("agent:main:bench-c1", "bench reply: turn 0 of client 1")
	reply("agent:main:other", "not a bench reply")
	if err := checkReplies(ctx, db, "bench reply: turn ", 4, 2); err != nil {
		t.Fatalf("2 sessions × 2 replies, want 4 with 2 each: %v", err)
	}
	if err := checkReplies(ctx, db, "bench reply: turn ", 6, 2); err == nil || !strings.Contains(err.Error(), "want 6 in 3") {
		t.Fatalf("a missing session: err %v, want the count named", err)
	}
	reply("agent:main:bench-c1", "bench reply: turn 0 of client 1") // a run that ran twice
	if err := checkReplies(ctx, db, "bench reply: turn ", 4, 2); err == nil || !strings.Contains(err.Error(), "holds 3 replies") {
		t.Fatalf("a third reply in one session: err %v, want the session named", err)
	}
}
