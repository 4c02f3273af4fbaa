package mcp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/provider"
)

// The same child task runs unchanged against each HTTP provider kind by
// changing only the config: an httptest server on 127.0.0.1 replays the
// provider's recorded wire format (a tool call, then the final answer after
// the tool result came back).
func TestSameTaskOnEveryProviderKind(t *testing.T) {
	kinds := []struct {
		kind, dir, toolCall string
		apiKeyEnv           string
	}{
		{"anthropic", "anthropic", "tool_use.json", "TEST_ANTHROPIC_KEY"},
		{"openai", "openai", "function_call.json", "TEST_OPENAI_KEY"},
		{"openai-chat", "openai-chat", "tool_calls.json", "TEST_OPENAI_KEY"},
		{"openai-compatible", "openai-chat", "tool_calls.json", ""},
	}
	t.Setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
	t.Setenv("TEST_OPENAI_KEY", "sk-test")
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			root := filepath.Join("..", "testdata", "providers", k.dir)
			toolCall, err := os.ReadFile(filepath.Join(root, k.toolCall))
			if err != nil {
				t.Fatal(err)
			}
			final, err := os.ReadFile(filepath.Join(root, "final_text.json"))
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var bodies []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, string(b))
				n := len(bodies)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				if n == 1 {
					w.Write(toolCall)
				} else {
					w.Write(final)
				}
			}))
			defer srv.Close()
			base := srv.URL
			if k.kind != "anthropic" {
				base += "/v1"
			}
			cfg := fmt.Sprintf(`
[providers.p]
kind = %q
base_url = %q
api_key_env = %q
[[models]]
id = "p/model"
provider = "p"
name = "the-model"
[agents.defaults]
model = "p/model"
`, k.kind, base, k.apiKeyEnv)
			f := newFixtureFull(t, cfg, "2025-11-25", nil)
			var out struct {
				Status     string `json:"status"`
				Text       string `json:"text"`
				Iterations int    `json:"iterations"`
				ToolCalls  int    `json:"tool_calls_made"`
				Model      string `json:"model"`
			}
			res := f.call("spawn_agent", map[string]any{"task": "What is the weather in Paris?"}, &out)
			if out.Status != "ok" || out.Text != "It is 18°C with light rain in Paris right now." || out.Iterations != 2 || out.ToolCalls != 1 {
				t.Fatalf("%s: %s", k.kind, text(res))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != 2 || !strings.Contains(bodies[0], `"the-model"`) || !strings.Contains(bodies[0], "What is the weather in Paris?") {
				t.Fatalf("requests sent: %d; first %.300s", len(bodies), bodies[0])
			}
			// The tool result (the recorded call names a tool we do not have,
			// so it is an error result) went back in the provider's own shape.
			if !strings.Contains(bodies[1], "unknown tool") {
				t.Fatalf("second request carries no tool result: %.600s", bodies[1])
			}
		})
	}
}

// The sampling provider uses the MCP client's own model through
// sampling/createMessage: no API key, no HTTP.
func TestSamplingProviderThroughTheClient(t *testing.T) {
	var mu sync.Mutex
	var seen []mcp.CreateMessageRequest
	handler := samplingFunc(func(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		return &mcp.CreateMessageResult{
			SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.TextContent{Type: "text", Text: "the client's model says hi"}},
			Model:           "client-model", StopReason: "endTurn",
		}, nil
	})
	cfg := `
[providers.client]
kind = "sampling"
[[models]]
id = "client/default"
provider = "client"
[agents.defaults]
model = "client/default"
`
	f := newFixtureFull(t, cfg, "2025-11-25", nil, client.WithSamplingHandler(handler))
	var out struct {
		Status string `json:"status"`
		Text   string `json:"text"`
	}
	res := f.call("spawn_agent", map[string]any{"task": "say hi"}, &out)
	if out.Status != "ok" || out.Text != "the client's model says hi" {
		t.Fatalf("sampling: %s", text(res))
	}
	// A background spawn reaches the client's model too (outside any request).
	sp := f.spawn(map[string]any{"task": "say hi in the background"})
	if r := f.result(sp.RunID, 30); r.Status != "ok" || r.Text != "the client's model says hi" {
		t.Fatalf("background sampling: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || !strings.Contains(seen[0].CreateMessageParams.SystemPrompt, "sub-agent") {
		t.Fatalf("sampling requests: %d", len(seen))
	}
}

type samplingFunc func(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)

func (f samplingFunc) CreateMessage(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return f(ctx, req)
}

var _ provider.Sampler = (*clientSampler)(nil)
