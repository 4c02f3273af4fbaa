package mcp

import (
	"log/slog"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// BuildOptions tune Build; nil is allowed.
type BuildOptions struct {
	Logger  *slog.Logger
	Version string
	// Providers replaces provider instances by name (tests, demos).
	Providers map[string]provider.Provider
	// Provider options for every provider (e.g. an HTTP client in tests).
	Provider *provider.Options
}

// Build wires the policy gate, the runtime, the tool registry and the MCP
// surface over an open store. The MCP client acts as cfg.MCP.Agent under
// cfg.MCP.Preset; child agents reach the same registry through tools.Box.
func Build(cfg *config.Config, st *store.Store, opts *BuildOptions) (*Server, error) {
	if opts == nil {
		opts = &BuildOptions{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gate, err := policy.New(cfg, st, tools.Catalog)
	if err != nil {
		return nil, err
	}
	rt := spruntime.New(cfg, st, &spruntime.Options{Logger: log, Providers: opts.Providers, Provider: opts.Provider})
	runs := spruntime.NewManager(rt)
	env := &tools.Env{Store: st, Config: cfg, Policy: gate, Runtime: rt, Runs: runs, Log: log}
	all := append(tools.ReadTools(), tools.YieldTool(), tools.SubagentsTool(), tools.SendTool())
	all = append(all, tools.SpawnTools()...)
	reg := tools.NewRegistry(env, all...)
	srv, err := New(reg, Options{Agent: cfg.MCP.Agent, Preset: cfg.MCP.Preset, Version: opts.Version, Logger: log})
	if err != nil {
		return nil, err
	}
	srv.runs = runs
	rt.SetTools(&tools.Box{Reg: reg})
	rt.SetSampler(srv.sampler())
	runs.SetNotifier(srv.announced)
	runs.SetGate(gate)
	env.Delivered = srv.delivered
	return srv, nil
}
