package tools

import (
	"reflect"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// sessions_list reads sessions with ListFilter.Brief, which leaves six
// fields zero: what it shows of a session must not depend on them.
func TestSessionInfoNeedsOnlyTheBriefColumns(t *testing.T) {
	brief := store.Session{Key: "agent:m:subagent:a", ID: "id", AgentID: "m", Kind: "subagent", Label: "l", ParentKey: "agent:m:main",
		SpawnedBy: "agent:m:main", Model: "m1", Status: "idle", MessageCount: 3, TokensIn: 1, TokensOut: 2, CostUSD: 0.5,
		CreatedAt: 10, UpdatedAt: 20, ArchivedAt: 30}
	full := brief
	full.Depth, full.Thinking, full.Preset, full.ModelServed, full.ForkedFrom, full.ForkedAtSeq = 2, "high", "p", "m1-served", "agent:m:x", 7
	if got, want := sessionInfo(&brief), sessionInfo(&full); !reflect.DeepEqual(got, want) {
		t.Fatalf("sessionInfo of a brief row %+v, of the full row %+v", got, want)
	}
}
