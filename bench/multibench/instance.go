package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/benchpg"
)

// instance is one sessionplane server process and the stdio client that
// started it. Its stderr (debug log) goes to a file, where the store's
// retries of conflicting write transactions are counted.
type instance struct {
	c      *client.Client
	cmd    *exec.Cmd
	stderr string
}

// protocolVersion is pinned as refbench pins it.
const protocolVersion = "2025-11-25"

// startInstance starts `bin --config cfg --db dsn --log-level debug` and
// initializes an MCP session with it.
func startInstance(ctx context.Context, bin, cfg, dsn, logPath string, hermetic []string) (*instance, error) {
	in := &instance{stderr: logPath}
	// The shell execs the server (same pid) with stderr on the log file, so
	// every line is kept (mcp-go's own stderr capture keeps a bounded tail).
	args := []string{"-c", `exec "$0" "$@" 2>"$MULTIBENCH_LOG"`, bin, "--config", cfg, "--db", dsn, "--log-level", "debug"}
	env := append(append([]string(nil), hermetic...), "MULTIBENCH_LOG="+logPath)
	tr := transport.NewStdioWithOptions("/bin/sh", env, args,
		transport.WithCommandFunc(func(ctx context.Context, command string, env []string, args []string) (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, command, args...)
			cmd.Env = append(os.Environ(), env...)
			in.cmd = cmd
			return cmd, nil
		}))
	in.c = client.NewClient(tr)
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := in.c.Start(ctx); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = protocolVersion
	init.Params.ClientInfo = mcp.Implementation{Name: "multibench", Version: "1"}
	if _, err := in.c.Initialize(sctx, init); err != nil {
		in.c.Close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	return in, nil
}

// pid is the server process's id.
func (in *instance) pid() int {
	if in.cmd == nil || in.cmd.Process == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// cpu is the server process's CPU time so far.
func (in *instance) cpu() time.Duration {
	d, _ := benchpg.ProcCPU(in.pid())
	return d
}

// close ends the client, which closes the server's stdin; the server
// drains and exits (mcp-go waits for it).
func (in *instance) close() { _ = in.c.Close() }

// retries counts the store's retries of whole write batches in the log:
// SQLITE_BUSY on SQLite, serialization failures and deadlocks on
// PostgreSQL (runtime/store commitBatch, "store busy, retrying").
func retries(logPath string) int {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "store busy, retrying")
}

// writeConfig writes the servers' config and script: a scripted model
// that answers every task with "bench reply: <task>" after delay.
func writeConfig(dir string, delay time.Duration, lane int) (string, error) {
	script := fmt.Sprintf(`{"description": "multibench: one short turn", "model": "scripted-bench",
  "conversations": [{"turns": [{"text": "bench reply: {{task}}", "delay_ms": %d, "usage": {"input_tokens": 100, "output_tokens": 10}}]}]}`,
		delay.Milliseconds())
	if err := os.WriteFile(filepath.Join(dir, "bench.script.json"), []byte(script), 0o644); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`[providers.script]
kind = "scripted"
script = "bench.script.json"

[[models]]
id = "script/m"
provider = "script"

[agents.defaults]
model = "script/m"

[agents.defaults.subagents]
max_concurrent = %d
max_children_per_agent = 1000
archive_after_minutes = 0

[approval]
spawn-subagent = "none"
`, lane)
	path := filepath.Join(dir, "bench.toml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}
