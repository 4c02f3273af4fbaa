package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// TestDemo runs `sessionplane demo` in-process and reads its transcript as
// a new user would: each step of the coordinator flow is there, the child
// searched for its task (not for the fence its task came in), the
// announce carries the stats line, and a refusal is visible.
func TestDemo(t *testing.T) {
	t.Parallel()
	db := testdb.DSN(t, "demo.db")
	for round := 1; round <= 2; round++ { // a second run on the same database reads as well
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"demo", "--db", db}, strings.NewReader(""), &out, &errOut); code != 0 {
			t.Fatalf("round %d: exit %d\nstderr: %s\nstdout: %s", round, code, errOut.String(), out.String())
		}
		got := out.String()
		for _, want := range []string{
			"→ sessions_list", "→ task_list", "→ sessions_spawn", "Sub-agent accepted.", "Task: research the deploy history",
			"→ spawn_result", `[announce] sub-agent "deploy research"`, "finished: ok", "Stats: runtime ", "• est $",
			`for "research the deploy history":`, "agent:main:ops-payments #1 user",
			"← sessions_list [error]: forbidden", "[rule subagents.default_deny]",
			`hit(s) for "rollback"`, "Reply from agent:main:release-desk", "Scripted demo reply to: Add the rollback drill",
			"← refused: forbidden: role=system", "status: pending → completed", "Done in ", "1 refused",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("round %d: the demo output lacks %q:\n%s", round, want, got)
			}
		}
		for _, bad := range []string{"<<<MESSAGE from another session", `0 hit(s)`} {
			if strings.Contains(got, bad) {
				t.Errorf("round %d: the demo output shows %q:\n%s", round, bad, got)
			}
		}
		// The child's answer is shown once, by spawn_result, not again as a
		// prefix of the next result.
		if n := strings.Count(got, "Research done. The search returned:"); n != 2 { // spawn_result + the child's own history
			t.Errorf("round %d: the child's answer appears %d times, want 2 (spawn_result and sessions_history)", round, n)
		}
		if round == 1 && !strings.Contains(got, "Seeded 3 sample sessions") {
			t.Errorf("round 1: no sample sessions seeded:\n%s", got)
		}
		if round == 2 && strings.Contains(got, "Seeded") {
			t.Errorf("round 2 seeded again:\n%s", got)
		}
	}
}
