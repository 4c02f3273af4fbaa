package mcp

import (
	"context"
	"strings"
	"testing"
)

// largestRecorded is the size of the largest message stored in the MCP
// client's own transcript.
func (f *fixture) largestRecorded() int {
	f.t.Helper()
	var n int
	if err := f.st.DB().QueryRowContext(context.Background(),
		`SELECT COALESCE(max(length(content)), 0) FROM messages WHERE session_key = ?`, "agent:main:main").Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// What was seen 2: a call rejected for a bad argument (a 5 MB task_list
// title) still stored 5,242,997 bytes in the caller's transcript. Now a
// call over a limit is refused at once, naming the argument, the limit and
// the key, and only a bounded summary of a refused call is recorded.
func TestRefusedCallsRecordBoundedSummaries(t *testing.T) {
	f := newFixture(t, "")
	cases := []struct {
		title string
		want  []string
	}{
		{strings.Repeat("x", 5<<20), []string{"arguments of task_list", "[limits] call_bytes"}},
		{strings.Repeat("x", 600<<10), []string{"argument title", "65536", "[limits] string_bytes"}},
		{strings.Repeat("x", 2000), []string{"title"}}, // within [limits], refused by the schema (500 characters)
	}
	for _, c := range cases {
		res := f.call("task_list", map[string]any{"action": "create", "list": "l", "title": c.title}, nil)
		f.wantError(res, c.want...)
	}
	if n := f.largestRecorded(); n > 8<<10 {
		t.Fatalf("largest recorded message is %d bytes after refused calls, want ≤ 8 KiB", n)
	}
	var n int
	if err := f.st.DB().QueryRow(`SELECT count(*) FROM messages WHERE session_key = 'agent:main:main' AND content LIKE '%_omitted%'`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("summaries recorded = %d (%v), want 3", n, err)
	}
}

// What was seen 2: one 10 MB sessions_send grew the database by 37 MB.
// Over [limits] message_bytes it is refused before anything is stored.
func TestSendOverMessageLimitStoresNothing(t *testing.T) {
	f := newFixture(t, "")
	f.session("agent:main:other", "", "", 0)
	var before int
	if err := f.st.DB().QueryRow(`SELECT COALESCE(sum(length(content)), 0) FROM messages`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		size int
		want string
	}{{10 << 20, "[limits] call_bytes"}, {1536 << 10, "[limits] message_bytes"}} {
		res := f.call("sessions_send", map[string]any{"key": "agent:main:other", "message": strings.Repeat("m", c.size), "timeoutSeconds": 0}, nil)
		f.wantError(res, c.want)
	}
	var after, target int
	if err := f.st.DB().QueryRow(`SELECT COALESCE(sum(length(content)), 0) FROM messages`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if err := f.st.DB().QueryRow(`SELECT count(*) FROM messages WHERE session_key = 'agent:main:other'`).Scan(&target); err != nil || target != 0 {
		t.Fatalf("target got %d messages (%v)", target, err)
	}
	if grew := after - before; grew > 8<<10 {
		t.Fatalf("transcripts grew by %d bytes for two refused sends", grew)
	}
}

// [limits] keys change the limits, and the refusal names the key.
func TestLimitsFromConfig(t *testing.T) {
	f := newFixture(t, "[limits]\nstring_bytes = 1024\nsearch_query_terms = 3\n")
	res := f.call("task_list", map[string]any{"action": "create", "list": strings.Repeat("l", 2000), "title": "t"}, nil)
	f.wantError(res, "argument list", "1024", "[limits] string_bytes")
	res = f.call("sessions_search", map[string]any{"query": "one two three four"}, nil)
	f.wantError(res, "4 words", "[limits] search_query_terms")
	res = f.call("sessions_search", map[string]any{"query": strings.Repeat("q", 2000)}, nil)
	f.wantError(res, "query", "[limits] search_query_bytes")
	res = f.call("sessions_search", map[string]any{"query": "one two three"}, nil)
	if res.IsError {
		t.Fatalf("a query within the limits was refused: %s", text(res))
	}
}

// What was seen 6: integers above 2^53 were silently rounded
// (9223372036854775807 became 9223372036854776000).
func TestIntegerBeyondExactRangeRefused(t *testing.T) {
	f := newFixture(t, "")
	res := f.call("sessions_list", map[string]any{"limit": int64(9223372036854775807)}, nil)
	f.wantError(res, "argument limit", "does not fit exactly", "2^53")
	res = f.call("sessions_list", map[string]any{"limit": 5}, nil)
	if res.IsError {
		t.Fatalf("limit 5 refused: %s", text(res))
	}
}
