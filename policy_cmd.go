package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	spmcp "github.com/sessionplane/sessionplane/mcp"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

const policyUsage = `usage: sessionplane policy explain [--config FILE] [--db PATH] [--agent ID] [--preset NAME]
       [--tool NAME] [--key SESSION] [--with-preset NAME] [--spawn JSON] [--json]

Explains what the MCP client (the agent and preset the server would serve it as) may do and why:
the gate's decision, rule and config key for a tool (--tool, with --key for the session it names),
a session (--key: read and send), every tool (neither), and a spawn (--spawn '{"agentId":"x",...}',
the arguments of policy_explain's spawn). The database is read for session owners and active
children when it exists; otherwise an empty one in a temporary directory is used.
`

// runPolicy is `sessionplane policy explain`: the policy_explain tool's
// handler on the command line, over the same gate.
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "explain" {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	var o options
	var in tools.ExplainIn
	var spawn string
	var asJSON bool
	fs := flag.NewFlagSet("sessionplane policy explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "config file (resolved as for the server)")
	fs.StringVar(&o.db, "db", "", "SQLite database (default [store] path)")
	fs.StringVar(&o.agent, "agent", "", "agent id the MCP client acts as")
	fs.StringVar(&o.preset, "preset", "", "preset applied to the MCP client")
	fs.StringVar(&in.Tool, "tool", "", "the tool to explain")
	fs.StringVar(&in.Key, "key", "", "the session key the call names")
	fs.StringVar(&in.Preset, "with-preset", "", "add this preset to the client's (narrows only)")
	fs.StringVar(&spawn, "spawn", "", "explain a spawn: JSON object of policy_explain's spawn arguments")
	fs.BoolVar(&asJSON, "json", false, "print the structured result as JSON")
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sessionplane policy explain: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if spawn != "" {
		err := json.Unmarshal([]byte(spawn), &in.Spawn)
		if err == nil {
			_, err = tools.DecodeExplainSpawn(in.Spawn)
		}
		if err != nil {
			fmt.Fprintf(stderr, "sessionplane policy explain: --spawn: %v (e.g. --spawn '{\"agentId\":\"researcher\",\"preset\":\"observer\"}')\n", err)
			return 2
		}
	}
	cfg, err := loadConfig(&o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	path := cfg.Store.Path
	if _, err := os.Stat(path); err != nil {
		dir, err := os.MkdirTemp("", "sessionplane-explain-")
		if err != nil {
			fmt.Fprintln(stderr, "sessionplane:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "empty.db")
	}
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane:", err)
		return 1
	}
	defer st.Close()
	srv, err := spmcp.Build(cfg, st, nil)
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane:", err)
		return 2
	}
	defer srv.Close()
	out, text, err := srv.Explain(ctx, in)
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane policy explain:", err)
		return 2
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintln(stdout, text)
	return 0
}
