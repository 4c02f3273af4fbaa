package mcp

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/tools"
)

func TestRunResourceSubscriptionAndPrompt(t *testing.T) {
	f, _ := newSpawnFixture(t, "")
	ctx := context.Background()
	var mu sync.Mutex
	updated := map[string]int{}
	f.c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/resources/updated" {
			mu.Lock()
			updated[n.Params.AdditionalFields["uri"].(string)]++
			mu.Unlock()
		}
	})
	out := f.spawn(map[string]any{"task": "slow thing", "label": "watched"})
	uri := "run://" + out.RunID
	sub := mcp.SubscribeRequest{}
	sub.Params.URI = uri
	if err := f.c.Subscribe(ctx, sub); err != nil {
		t.Fatal(err)
	}
	read := mcp.ReadResourceRequest{}
	read.Params.URI = uri
	res, err := f.c.ReadResource(ctx, read)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		TaskID string `json:"task_id"`
		Status string `json:"status"`
		Label  string `json:"label"`
	}
	json.Unmarshal([]byte(res.Contents[0].(mcp.TextResourceContents).Text), &info)
	if info.TaskID != out.RunID || info.Label != "watched" {
		t.Fatalf("run resource: %+v", info)
	}
	f.call("cancel_spawn", map[string]any{"task_id": out.RunID}, nil)
	waitFor(t, "notifications/resources/updated for the run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return updated[uri] > 0
	})
	// Another session may not read the run.
	other := f.srv.Caller()
	other.Key = "agent:main:other"
	if _, err := tools.RunResource(ctx, f.srv.reg.Env(), other, out.RunID); err == nil || !strings.Contains(err.Error(), "spawn task access denied") {
		t.Fatalf("run resource for another session: %v", err)
	}
	// The subagents prompt renders the run table.
	p := mcp.GetPromptRequest{}
	p.Params.Name = "subagents"
	pr, err := f.c.GetPrompt(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	txt := pr.Messages[0].Content.(mcp.TextContent).Text
	if !strings.Contains(txt, "🧭 Subagents") || !strings.Contains(txt, "watched") {
		t.Fatalf("prompt: %s", txt)
	}
	read.Params.URI = "run://no-such-run"
	if _, err := f.c.ReadResource(ctx, read); err == nil || !strings.Contains(err.Error(), "no-such-run") {
		t.Fatalf("missing run: %v", err)
	}
}
