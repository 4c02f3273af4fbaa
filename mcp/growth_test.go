package mcp

import (
	"strings"
	"testing"
)

// What was seen 2: one 10 MB sessions_send grew database and WAL by 37 MB.
// Within [limits] message_bytes, a send grows the database by a bounded
// multiple of its size: the text is kept in the transcript and in the
// full-text index's source column (2×), the sender's transcript keeps only a
// summary of the arguments, and the index of a repeated word is small.
func TestSendGrowthBounded(t *testing.T) {
	f := newFixture(t, "")
	pages := func() int64 {
		t.Helper()
		if _, err := f.st.DB().Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
		var n, free, size int64
		if err := f.st.DB().QueryRow(`PRAGMA page_count`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := f.st.DB().QueryRow(`PRAGMA freelist_count`).Scan(&free); err != nil {
			t.Fatal(err)
		}
		if err := f.st.DB().QueryRow(`PRAGMA page_size`).Scan(&size); err != nil {
			t.Fatal(err)
		}
		return (n - free) * size
	}
	f.call("session_status", map[string]any{}, nil) // the client's session exists
	f.session("agent:other:main", "", "", 0)
	before := pages()
	msg := strings.Repeat("deploy the service ", (900<<10)/19)
	res := f.call("sessions_send", map[string]any{"key": "agent:other:main", "message": msg, "timeoutSeconds": 0}, nil)
	if res.IsError {
		t.Fatalf("send within the limits: %s", text(res))
	}
	grew := pages() - before
	t.Logf("a %d-byte message grew the database by %d bytes (%.2f×)", len(msg), grew, float64(grew)/float64(len(msg)))
	if max := int64(2*len(msg)) + 256<<10; grew > max {
		t.Fatalf("grew by %d bytes for a %d-byte message, want ≤ %d (2× + 256 KiB)", grew, len(msg), max)
	}
}
