package mcp

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// A message another session delivers to the client's own session reaches
// the client as a sessionplane.message notice naming the sender, once; the
// client's own tool-call records and announce copies in that transcript
// are not deliveries.
func TestDeliveredMessageNotice(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	ctx := context.Background()
	var mu sync.Mutex
	var froms [][]string
	f.c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method != "notifications/message" || n.Params.AdditionalFields["logger"] != "sessionplane.message" {
			return
		}
		// In process the params may be Go values: read them as JSON.
		raw, _ := json.Marshal(n.Params.AdditionalFields["data"])
		var data struct {
			From []string `json:"from"`
		}
		json.Unmarshal(raw, &data)
		mu.Lock()
		froms = append(froms, data.From)
		mu.Unlock()
	})
	f.call("sessions_list", map[string]any{}, nil) // the session exists, with a record
	key := f.srv.Caller().Key
	// Not a delivery: an inter-session message without a sender line.
	if err := f.st.AppendMessages(ctx, []store.Message{{SessionKey: key, Role: store.RoleUser, Trust: store.TrustInterSession,
		Content: store.Content{Text: "[Subagent finished] done"}}}); err != nil {
		t.Fatal(err)
	}
	f.call("sessions_list", map[string]any{}, nil) // a record after it, not yet committed
	if err := f.st.AppendMessages(ctx, []store.Message{{SessionKey: key, Role: store.RoleUser, Trust: store.TrustInterSession,
		Content: store.Content{Text: "[From: agent:peer:main] hello"}}}); err != nil {
		t.Fatal(err)
	}
	f.srv.delivered(key)
	waitFor(t, "the delivery notice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(froms) > 0
	})
	// A pass with nothing new sends nothing more.
	start := f.srv.notifyPasses.Load()
	f.call("sessions_list", map[string]any{}, nil)
	f.srv.delivered(key)
	waitFor(t, "a notifier pass", func() bool { return f.srv.notifyPasses.Load() > start })
	mu.Lock()
	defer mu.Unlock()
	if len(froms) != 1 || len(froms[0]) != 1 || froms[0][0] != "agent:peer:main" {
		t.Fatalf("delivery notices: %v, want one from agent:peer:main", froms)
	}
}
