package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// A new child's run, created with its session, hands its turn the
// transcript it wrote (no read back): claimed at once, the first model
// call sees its task; queued behind a full lane, it still sees what was
// appended to its session while it waited (a subagents send), once; and a
// message delivered during its last model call gets one more call.
func TestSpawnTurnKnownTranscript(t *testing.T) {
	ctx := context.Background()
	type call struct {
		texts   []string
		release chan struct{}
	}
	calls := make(chan call)
	prov := &fakeProvider{fn: func(ctx context.Context, _ int, req provider.Request) (*provider.Response, error) {
		c := call{release: make(chan struct{})}
		for _, m := range req.Messages {
			if m.Role == provider.RoleUser {
				c.texts = append(c.texts, m.Text)
			}
		}
		select {
		case calls <- c:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		select {
		case <-c.release:
			return &provider.Response{Text: "done"}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	m, st := laneOfOne(t, "known", prov)

	spawn := func(id string) *store.Run {
		t.Helper()
		child := "agent:w:subagent:" + id
		task := store.Message{SessionKey: child, Role: store.RoleUser, Trust: store.TrustUser, Content: store.Content{Text: "task " + id}}
		r := &store.Run{ID: id, Kind: KindSpawn, ChildKey: child, RequesterKey: "agent:main:main", AgentID: "w"}
		opts := runOptions{Caller: policy.Caller{Key: child, AgentID: "w", Depth: 1}, ModelID: "fake/m"}
		if err := m.submitWith(ctx, &store.Session{Key: child, Depth: 1}, []store.Message{task}, r, opts); err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := spawn("a")
	first := <-calls
	if a.State != store.RunRunning || strings.Join(first.texts, "|") != "task a" {
		t.Fatalf("claimed at create: state %s, first call's user messages %q", a.State, first.texts)
	}
	b := spawn("b") // the lane is full: queued
	if b.State != store.RunQueued {
		t.Fatalf("second run %s, want queued", b.State)
	}
	if _, err := st.AppendMessage(ctx, store.Message{SessionKey: b.ChildKey, Role: store.RoleUser, Trust: store.TrustUser,
		Content: store.Content{Text: "sent while queued"}}); err != nil {
		t.Fatal(err)
	}
	close(first.release)
	second := <-calls
	if strings.Join(second.texts, "|") != "task b|sent while queued" {
		t.Fatalf("queued run's first call's user messages %q", second.texts)
	}
	close(second.release)
	for _, id := range []string{"a", "b"} {
		if r := ended(t, m, id); r.State != store.RunOK {
			t.Fatalf("run %s: %s", id, r.State)
		}
	}

	// A message another session sends while the model makes what would be
	// the run's last call is read by that run: one more call sees it.
	c := spawn("c")
	only := <-calls
	if _, err := st.AppendMessage(ctx, store.Message{SessionKey: c.ChildKey, Role: store.RoleUser, Trust: store.TrustInterSession,
		Content: store.Content{Text: "[From: agent:peer:main]\n\nsent during the call"}}); err != nil {
		t.Fatal(err)
	}
	close(only.release)
	var again call
	select {
	case again = <-calls:
	case <-time.After(20 * time.Second): // bounded: without the extra call the run just ends
		t.Fatal("no model call after a message delivered during the last one")
	}
	if len(again.texts) != 2 || again.texts[0] != "task c" || !strings.Contains(again.texts[1], "[From: agent:peer:main]\n\nsent during the call") {
		t.Fatalf("the call after a delivery: user messages %q", again.texts)
	}
	close(again.release)
	if r := ended(t, m, "c"); r.State != store.RunOK || r.Iterations != 2 {
		t.Fatalf("run c: %s after %d model calls, want ok after 2", r.State, r.Iterations)
	}
	msgs, err := st.Transcript(ctx, c.ChildKey)
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, m := range msgs {
		roles = append(roles, m.Role)
	}
	if got := strings.Join(roles, ","); got != "user,user,assistant,assistant" {
		t.Fatalf("transcript roles %s, want the task, the delivery (committed during the call), both answers", got)
	}
}

// Children's keys (and new sessions' ids) grow with time, so a burst of
// spawns appends to the indexes keyed by them instead of writing a
// random page of each.
func TestChildKeysGrowWithTime(t *testing.T) {
	parent := policy.Caller{Key: "agent:main:main", AgentID: "main"}
	prevKey, prevID := "", ""
	for i := 0; i < 200; i++ {
		key := ChildKey(parent, "main")
		id := store.NewSession(store.Session{Key: key}).ID
		if !strings.HasPrefix(key, "agent:main:subagent:") || key <= prevKey || id <= prevID {
			t.Fatalf("spawn %d: key %q after %q, session id %q after %q", i, key, prevKey, id, prevID)
		}
		prevKey, prevID = key, id
	}
}
