package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `sessionplane policy explain` answers with the gate's decisions for the
// principal the server would serve, and never creates the database.
//
// On SQLite always: "never creates the database" is checked on the file.
func TestPolicyExplainCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte(`
[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:1/v1"
[[models]]
id = "local/m"
provider = "local"
[agents.defaults]
model = "local/m"
[mcp]
preset = "observer"
[agents.presets.observer]
tools.allow = ["sessions_list", "sessions_history", "sessions_spawn"]
[agents.presets.observer.sessions]
key_prefix = "agent:main:"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "never.db")
	explain := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"policy", "explain", "--config", cfg, "--db", db}, args...), strings.NewReader(""), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, _ := explain("--tool", "sessions_history", "--key", "agent:other:main", "--json")
	var got struct {
		Caller    string `json:"caller"`
		Decisions []struct {
			Effect, Rule, ConfigKey string
		} `json:"decisions"`
		Spawn *struct {
			Effect string   `json:"effect"`
			Model  string   `json:"model"`
			Tools  []string `json:"tools"`
		} `json:"spawn"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("exit %d: %s", code, out)
	}
	if got.Caller != "agent:main:observer" || len(got.Decisions) != 1 || got.Decisions[0].Effect != "deny" ||
		got.Decisions[0].Rule != "sessions.key_prefix" || got.Decisions[0].ConfigKey != "agents.presets.observer.sessions.key_prefix" {
		t.Fatalf("explain: %+v", got)
	}
	code, out, _ = explain("--spawn", `{"model":"local/m"}`, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Spawn == nil || got.Spawn.Effect != "ask" || got.Spawn.Model != "local/m" {
		t.Fatalf("spawn explain (exit %d): %s", code, out)
	}
	code, out, _ = explain()
	if code != 0 || !strings.Contains(out, "Allowed tools: sessions_list, sessions_history, sessions_spawn") ||
		!strings.Contains(out, "tool cron: deny [rule tools.allow] [config agents.presets.observer.tools.allow]") {
		t.Fatalf("explain all (exit %d): %s", code, out)
	}
	if code, _, stderr := explain("--with-preset", "ghost"); code != 2 || !strings.Contains(stderr, `preset "ghost" is not defined`) {
		t.Fatalf("unknown preset: exit %d %s", code, stderr)
	}
	if code, _, stderr := explain("--spawn", `{"agent":"x"}`); code != 2 || !strings.Contains(stderr, "--spawn") {
		t.Fatalf("bad --spawn: exit %d %s", code, stderr)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Fatalf("policy explain created the database: %v", err)
	}
}
