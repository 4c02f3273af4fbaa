package mcp

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/cron"
	"github.com/sessionplane/sessionplane/runtime/downstream"
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
	// Cron tunes the scheduler (tests: a fake clock, a short tick or
	// minimum interval); nil takes the defaults. Its Logger defaults to Logger.
	Cron *cron.Options
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
	cronOpts := cron.Options{}
	if opts.Cron != nil {
		cronOpts = *opts.Cron
	}
	if cronOpts.Logger == nil {
		cronOpts.Logger = log
	}
	if cronOpts.MinEvery == 0 {
		cronOpts.MinEvery = cfg.Cron.MinEvery()
	}
	sched := cron.New(st, cronFire(cfg, gate, runs), &cronOpts)
	reg := tools.NewRegistry(env, tools.Standard(sched)...)
	srv, err := New(reg, Options{Agent: cfg.MCP.Agent, Preset: cfg.MCP.Preset, Session: cfg.MCP.Session, Version: opts.Version, Logger: log})
	if err != nil {
		return nil, err
	}
	srv.runs = runs
	srv.cron = sched
	box := &tools.Box{Reg: reg}
	if len(cfg.MCPServers) > 0 {
		// Started lazily, on a child's first use; closed (and reaped) by Close.
		srv.down = downstream.NewManager(cfg.MCPServers, &downstream.Options{Logger: log})
		box.Down = srv.down
	}
	rt.SetTools(box)
	rt.SetSampler(srv.sampler())
	runs.SetNotifier(srv.announced)
	runs.SetParkNotifier(srv.parked)
	runs.SetGate(gate)
	env.Delivered = srv.delivered
	return srv, nil
}

// cronFire starts a cron job's turn on the run manager: session
// cron:<jobId>, the payload's agent (default: the creator's, else "main"),
// announced to the creator; the message is marked [From: ...] like any
// message from another session. A timeout of 0 takes
// agents.defaults.subagents.run_timeout_seconds.
func cronFire(cfg *config.Config, gate *policy.Engine, runs *spruntime.Manager) cron.FireFunc {
	return func(ctx context.Context, j cron.Job) (string, error) {
		agent := j.Payload.AgentID
		if agent == "" {
			agent = store.AgentOf(j.CreatorKey)
		}
		if agent == "" {
			agent = "main"
		}
		timeout := j.Payload.TimeoutSecs
		if timeout == 0 {
			timeout = cfg.Agents.Defaults.Subagents.RunTimeoutSeconds
		}
		if !j.Payload.Bound {
			return "", fmt.Errorf("job %s was added by an earlier version that did not record its creator's authority: it does not fire (fail closed); remove it and add it again", j.ID)
		}
		// The creator's authority as recorded at add, its presets re-read
		// from the configuration in force (a removed preset fails closed).
		authority, err := gate.Refresh(j.Payload.Authority)
		if err != nil {
			return "", err
		}
		initiator := policy.Caller{Key: j.CreatorKey, AgentID: j.Payload.CreatorAgent, Via: j.Payload.CreatorVia, Layers: authority}
		// A scheduled firing names its occurrence: the agent knows which
		// slot it serves, and each occurrence is seen to fire once.
		due := ""
		if !j.Due.IsZero() {
			due = ", occurrence due " + j.Due.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		msg := fmt.Sprintf("[From: cron job %q (%s), added by %s%s]\n\n%s", j.Name, j.ID, j.CreatorKey, due, j.Payload.Message)
		tk, err := runs.SubmitTurn(ctx, gate, spruntime.TurnRequest{Kind: spruntime.KindCron, SessionKey: j.SessionKey(), AgentID: agent,
			RequesterKey: j.CreatorKey, Message: msg, Model: j.Payload.Model, ActiveTools: j.Payload.ActiveTools,
			ToolChoice: j.Payload.ToolChoice, Timeout: time.Duration(timeout) * time.Second, Label: j.Name, Initiator: initiator})
		if err != nil {
			return "", err
		}
		return tk.RunID, nil
	}
}
