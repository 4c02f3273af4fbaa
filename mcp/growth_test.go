package mcp

import (
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// What was seen 2: one 10 MB sessions_send grew database and WAL by 37 MB.
// Within [limits] message_bytes, a send grows the database by a bounded
// multiple of its size: the text is kept in the transcript and in the
// full-text index's source column (2×), the sender's transcript keeps only a
// summary of the arguments, and the index of a repeated word is small.
func TestSendGrowthBounded(t *testing.T) {
	f := newFixture(t, "")
	f.call("session_status", map[string]any{}, nil) // the client's session exists
	f.session("agent:other:main", "", "", 0)
	before := storedBytes(t, f.st)
	msg := strings.Repeat("deploy the service ", (900<<10)/19)
	res := f.call("sessions_send", map[string]any{"key": "agent:other:main", "message": msg, "timeoutSeconds": 0}, nil)
	if res.IsError {
		t.Fatalf("send within the limits: %s", text(res))
	}
	grew := storedBytes(t, f.st) - before
	t.Logf("a %d-byte message grew the database by %d bytes (%.2f×)", len(msg), grew, float64(grew)/float64(len(msg)))
	if max := int64(2*len(msg)) + 256<<10; grew > max {
		t.Fatalf("grew by %d bytes for a %d-byte message, want ≤ %d (2× + 256 KiB)", grew, len(msg), max)
	}
}

// storedBytes is the space the database's data takes: on SQLite the used
// pages of the file (after a checkpoint moves the WAL in), on PostgreSQL the
// tables of the store's schema with their indexes and TOAST.
func storedBytes(t *testing.T, st *store.Store) int64 {
	t.Helper()
	if st.Backend() == "postgres" {
		var n int64
		if err := st.DB().QueryRow(`SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
			JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = current_schema() AND c.relkind = 'r'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := st.DB().Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	var n, free, size int64
	if err := st.DB().QueryRow(`PRAGMA page_count`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := st.DB().QueryRow(`PRAGMA freelist_count`).Scan(&free); err != nil {
		t.Fatal(err)
	}
	if err := st.DB().QueryRow(`PRAGMA page_size`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	return (n - free) * size
}
