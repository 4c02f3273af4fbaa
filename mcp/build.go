package mcp

import (
	"log/slog"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// Build wires the policy gate, the tool registry and the MCP surface over an
// open store. The MCP client acts as cfg.MCP.Agent under cfg.MCP.Preset.
func Build(cfg *config.Config, st *store.Store, log *slog.Logger, version string) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gate, err := policy.New(cfg, st, tools.Catalog)
	if err != nil {
		return nil, err
	}
	env := &tools.Env{Store: st, Config: cfg, Policy: gate, Log: log}
	reg := tools.NewRegistry(env, tools.ReadTools()...)
	return New(reg, Options{Agent: cfg.MCP.Agent, Preset: cfg.MCP.Preset, Version: version, Logger: log})
}
