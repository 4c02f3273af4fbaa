package mcp

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// A spawn that finds a lane slot free costs the writer one waited
// transaction: the child session, its task, the run (claimed: it says
// running) and the spawn call's own transcript record together. Before
// issue 13's change it was three (create, record, claim). The record is
// written once, and announces waiting for the requester are delivered in
// front of the next spawn's result, claimed in that same transaction.
func TestSpawnIsOneWriterTransaction(t *testing.T) {
	bp := &blockingProvider{started: make(chan struct{}, 1), release: make(chan struct{})}
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, ""), "2025-11-25", map[string]provider.Provider{"script": bp})
	ctx := context.Background()
	const me = "agent:main:main"
	spawn := func(task string) (string, *mcp.CallToolResult, uint64) {
		t.Helper()
		w0 := f.st.WriteStats()
		var out struct {
			RunID string `json:"runId"`
		}
		res := f.call("sessions_spawn", map[string]any{"task": task}, &out)
		if res.IsError || out.RunID == "" {
			t.Fatalf("spawn: %+v", res)
		}
		<-bp.started // the run's model turn began
		return out.RunID, res, f.st.WriteStats().Waited - w0.Waited
	}
	// The heartbeat (every 2 s) may land in one call's window: the least
	// of three is the spawn's own count, and none may take more than one
	// write besides.
	var ids []string
	least, most := uint64(99), uint64(0)
	for i := 0; i < 3; i++ {
		id, _, n := spawn(fmt.Sprintf("task %d", i))
		ids = append(ids, id)
		least, most = min(least, n), max(most, n)
	}
	if least != 1 || most > 2 {
		t.Fatalf("waited writes per spawn: least %d, most %d; want 1 (create, claim and record in one transaction)", least, most)
	}
	for _, id := range ids {
		r, err := f.st.GetRun(ctx, id)
		if err != nil || r.State != store.RunRunning || r.StartedAt == 0 {
			t.Fatalf("run %s: %+v %v (want running, started)", id, r, err)
		}
		s, err := f.st.GetSession(ctx, r.ChildKey)
		if err != nil || s.Status != "running" {
			t.Fatalf("child session %s: %+v %v", r.ChildKey, s, err)
		}
	}
	// Each spawn call is in the requester's transcript exactly once, with
	// the result the client got.
	msgs, err := f.st.Transcript(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		n := 0
		for _, m := range msgs {
			for _, r := range m.Content.ToolResults {
				if r.Name == "sessions_spawn" && strings.Contains(r.Content, "Run: "+id) {
					n++
				}
			}
		}
		if n != 1 {
			t.Fatalf("spawn of run %s recorded %d times in %s's transcript, want 1", id, n, me)
		}
	}
	// Let the runs finish; their announces go in front of the next spawn's
	// result, delivered once.
	close(bp.release)
	waitFor(t, "the three announces", func() bool {
		for _, id := range ids {
			if a, err := f.st.GetAnnounce(ctx, id); err != nil || a == nil {
				return false
			}
		}
		return true
	})
	next, res, _ := spawn("after the announces")
	text := res.Content[0].(mcp.TextContent).Text
	for _, id := range ids {
		a, err := f.st.GetAnnounce(ctx, id)
		if err != nil || a.DeliveredAt == 0 {
			t.Fatalf("announce of %s not delivered: %+v %v", id, a, err)
		}
		if !strings.Contains(text, a.Body) {
			t.Fatalf("announce of %s is not in front of the next result:\n%s", id, text)
		}
	}
	if again := f.call("sessions_list", map[string]any{}, nil); strings.Contains(again.Content[0].(mcp.TextContent).Text, "---") &&
		strings.Contains(again.Content[0].(mcp.TextContent).Text, ids[0]) {
		t.Fatalf("an announce was delivered twice")
	}
	if r, _ := f.st.GetRun(ctx, next); r == nil {
		t.Fatalf("run %s missing", next)
	}
}
