package mcp

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/provider"
)

// Auth is decided by agent (seed 003): an agent's api_keys variable wins
// when set; otherwise the provider's api_key_env is the fallback.
func TestPerAgentKeyWithFallback(t *testing.T) {
	final, err := os.ReadFile(filepath.Join("..", "testdata", "providers", "openai-chat", "final_text.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(final)
	}))
	defer srv.Close()
	t.Setenv("SHARED_KEY", "sk-shared")
	t.Setenv("OPS_KEY", "sk-ops")
	t.Setenv("EMPTY_KEY", "")
	cfg := fmt.Sprintf(`
[providers.p]
kind = "openai-chat"
base_url = "%s/v1"
api_key_env = "SHARED_KEY"
[[models]]
id = "p/m"
provider = "p"
[agents.defaults]
model = "p/m"
[agents.defaults.subagents]
allow_agents = ["*"]
[[agents.list]]
id = "ops"
api_keys = { p = "OPS_KEY" }
[[agents.list]]
id = "lab"
api_keys = { p = "EMPTY_KEY" }
`, srv.URL)
	f := newFixtureFull(t, cfg, "2025-11-25", nil)
	for _, agent := range []string{"ops", "lab", "main"} {
		sp := f.spawn(map[string]any{"task": "hi", "agentId": agent})
		if r := f.result(sp.RunID, 30); r.Status != "ok" {
			t.Fatalf("%s: %+v", agent, r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"Bearer sk-ops", "Bearer sk-shared", "Bearer sk-shared"}
	if strings.Join(auths, ",") != strings.Join(want, ",") {
		t.Fatalf("keys sent: %v, want %v (ops: its own; lab: empty → fallback; main: the provider's)", auths, want)
	}
}

// The model a spawn names is the model the provider is asked for (a peer's
// bug: the override was reported as applied but never reached the run), and
// the agent's workspace files reach the child's system prompt.
func TestModelOverrideAndWorkspaceReachTheProvider(t *testing.T) {
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "AGENTS.md"), []byte("Always answer in French."), 0o644)
	os.WriteFile(filepath.Join(ws, "TOOLS.md"), []byte("Prefer sessions_search."), 0o644)
	sp := scripted(t)
	cfg := strings.Replace(fmt.Sprintf(spawnConfig, ""), "[[agents.list]]\nid = \"main\"\n", fmt.Sprintf("[[agents.list]]\nid = \"main\"\nworkspace = %q\n", ws), 1)
	f := newFixtureFull(t, cfg, "2025-11-25", map[string]provider.Provider{"script": sp})
	out := f.spawn(map[string]any{"task": "quick check", "model": "script/cheap"})
	if out.ModelApplied != "script/cheap" {
		t.Fatalf("modelApplied %q", out.ModelApplied)
	}
	if r := f.result(out.RunID, 30); r.Status != "ok" || r.Model != "script/cheap" {
		t.Fatalf("run: %+v", r)
	}
	reqs := sp.Requests()
	last := reqs[len(reqs)-1]
	if last.Model != "cheap" {
		t.Fatalf("provider asked for %q, want cheap (the name of script/cheap)", last.Model)
	}
	for _, want := range []string{"sub-agent", "agent:main:main", "## AGENTS.md", "Always answer in French.", "## TOOLS.md", "Prefer sessions_search."} {
		if !strings.Contains(last.System, want) {
			t.Errorf("system prompt lacks %q:\n%s", want, last.System)
		}
	}
}
