//go:build unix

package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/npmtest"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// A child agent lists a temp dir and reads a file through a real MCP server
// nobody here wrote (@modelcontextprotocol/server-filesystem), with its
// tools offered as fs__<tool> through the same policy gate.
func TestChildUsesDownstreamFilesystemServer(t *testing.T) {
	npmtest.Ensure(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("the launch is on Tuesday\n"), 0o644)
	list, _ := json.Marshal(map[string]any{"path": dir})
	read, _ := json.Marshal(map[string]any{"path": filepath.Join(dir, "notes.txt")})
	write, _ := json.Marshal(map[string]any{"path": filepath.Join(dir, "x.txt"), "content": "no"})
	script := fmt.Sprintf(`{"conversations": [{"match": "notes", "turns": [
		{"tool_calls": [{"name": "fs__list_directory", "args": %s}]},
		{"tool_calls": [{"name": "fs__read_text_file", "args": %s}]},
		{"tool_calls": [{"name": "fs__write_file", "args": %s}]},
		{"text": "done"}]}]}`, list, read, write)
	sc, err := provider.ParseScript([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	sp := provider.NewScripted("script", sc, nil)
	cfg := fmt.Sprintf(spawnConfig, "") + fmt.Sprintf(`
[tools.subagents.tools]
deny = ["fs__write_file"]
[[mcp_servers]]
name = "fs"
command = %q
args = [%q]
`, npmtest.Bin("mcp-server-filesystem"), dir)
	f := newFixtureFull(t, cfg, "2025-11-25", map[string]provider.Provider{"script": sp})
	var out struct {
		Status string `json:"status"`
		TaskID string `json:"task_id"`
	}
	res := f.call("spawn_agent", map[string]any{"task": "read the notes"}, &out)
	if out.Status != "ok" {
		t.Fatalf("spawn_agent: %s", text(res))
	}
	first := sp.Requests()[0]
	offered := map[string]bool{}
	for _, tl := range first.Tools {
		offered[tl.Name] = true
	}
	if !offered["fs__list_directory"] || !offered["fs__read_text_file"] || offered["fs__write_file"] {
		t.Fatalf("downstream tools offered to the child: %v", offered)
	}
	run, _ := f.st.GetRun(context.Background(), out.TaskID)
	msgs, _ := f.st.Transcript(context.Background(), run.ChildKey)
	var results []string
	for _, m := range msgs {
		if m.Role == store.RoleTool {
			results = append(results, m.Content.ToolResults[0].Content)
		}
	}
	if len(results) != 3 {
		t.Fatalf("tool results: %q", results)
	}
	if !strings.Contains(results[0], "[FILE] notes.txt") || !strings.Contains(results[0], "UNTRUSTED DATA from tool fs__list_directory") {
		t.Errorf("list_directory result: %q", results[0])
	}
	if !strings.Contains(results[1], "the launch is on Tuesday") {
		t.Errorf("read_text_file result: %q", results[1])
	}
	if !strings.Contains(results[2], "forbidden") || !strings.Contains(results[2], "tools.subagents.tools.deny") {
		t.Errorf("a denied downstream tool was not refused: %q", results[2])
	}
	if _, err := os.Stat(filepath.Join(dir, "x.txt")); err == nil {
		t.Error("the denied write happened")
	}
}
