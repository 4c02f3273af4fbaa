// Package runtime owns agent execution: model and thinking resolution, the
// provider instances, the system prompt of a child, and the agent loop
// (provider call → tool calls through the policy gate → results appended →
// repeat), persisting every step in the store as it happens.
//
// The runtime reaches tools only through the ToolBox interface, which the
// tools package implements with the same registry and gate the MCP surface
// uses; it never imports the MCP layer.
package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// ToolBox is the runtime's view of the tool set. Both methods apply the
// policy gate for the caller: Offer lists only tools the caller may call,
// and Call refuses (as an error result) anything the gate denies.
type ToolBox interface {
	Offer(ctx context.Context, c policy.Caller) []provider.ToolSpec
	Call(ctx context.Context, c policy.Caller, name string, args json.RawMessage) ToolResult
}

// ToolResult is a tool call's outcome as the model sees it.
type ToolResult struct {
	Text    string
	IsError bool
	// Park, when set, says the call needs a human's approval and nobody
	// can be asked now: a background run parks (see approvals.go).
	Park *Park
}

// Options configure a Runtime. nil is allowed.
type Options struct {
	Logger *slog.Logger
	// Provider options passed to every provider (HTTP client, sampler, ...).
	Provider *provider.Options
	// Getenv reads API keys (default os.Getenv).
	Getenv func(string) string
	// Providers overrides provider instances by name (tests).
	Providers map[string]provider.Provider
}

// Runtime runs agent turns. It is safe for concurrent use.
type Runtime struct {
	cfg    *config.Config
	st     *store.Store
	log    *slog.Logger
	getenv func(string) string
	popts  provider.Options

	mu        sync.Mutex
	tools     ToolBox
	providers map[string]provider.Provider
}

// New returns a runtime over cfg and st. Call SetTools before running turns.
func New(cfg *config.Config, st *store.Store, opts *Options) *Runtime {
	if opts == nil {
		opts = &Options{}
	}
	r := &Runtime{cfg: cfg, st: st, log: opts.Logger, getenv: opts.Getenv, providers: map[string]provider.Provider{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.getenv == nil {
		r.getenv = os.Getenv
	}
	if opts.Provider != nil {
		r.popts = *opts.Provider
	}
	if r.popts.Logger == nil {
		r.popts.Logger = r.log
	}
	for name, p := range opts.Providers {
		r.providers[name] = p
	}
	return r
}

// SetTools connects the tool set (built after the runtime, since spawn
// tools call back into it).
func (r *Runtime) SetTools(tb ToolBox) {
	r.mu.Lock()
	r.tools = tb
	r.mu.Unlock()
}

func (r *Runtime) toolbox() ToolBox {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tools
}

// Config is the configuration the runtime runs with.
func (r *Runtime) Config() *config.Config { return r.cfg }

// Store is the runtime's store.
func (r *Runtime) Store() *store.Store { return r.st }

// SetSampler sets the MCP client's sampler used by providers of kind
// "sampling" created after the call.
func (r *Runtime) SetSampler(s provider.Sampler) {
	r.mu.Lock()
	r.popts.Sampler = s
	r.mu.Unlock()
}

// Provider returns the provider instance named in [providers.<name>],
// creating it on first use.
func (r *Runtime) Provider(name string) (provider.Provider, error) { return r.ProviderFor(name, "") }

// ProviderFor returns the provider for a run of agentID. Auth is decided by
// agent (seed 003): the agent's api_keys.<provider> variable when it is set
// and not empty, else (the fallback) the provider's own api_key_env.
func (r *Runtime) ProviderFor(name, agentID string) (provider.Provider, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.providers[name]; ok {
		return p, nil // shared instance (or one a test put in)
	}
	pc, ok := r.cfg.Providers[name]
	if !ok {
		return nil, fmt.Errorf("provider %q is not configured: add [providers.%s]", name, name)
	}
	if a, ok := r.cfg.Agent(agentID); ok && a.APIKeys[name] != "" {
		if key := r.getenv(a.APIKeys[name]); key != "" {
			cacheKey := name + "\x00agent:" + agentID
			if p, ok := r.providers[cacheKey]; ok {
				return p, nil
			}
			p, err := r.newProvider(name, pc, key)
			if err != nil {
				return nil, err
			}
			r.providers[cacheKey] = p
			return p, nil
		}
	}
	key := ""
	if pc.APIKeyEnv != "" {
		key = r.getenv(pc.APIKeyEnv)
		if key == "" && (pc.Kind == "anthropic" || pc.Kind == "openai" || pc.Kind == "openai-chat") {
			return nil, fmt.Errorf("provider %q: environment variable %s (providers.%s.api_key_env) is empty: export the API key", name, pc.APIKeyEnv, name)
		}
	}
	p, err := r.newProvider(name, pc, key)
	if err != nil {
		return nil, err
	}
	r.providers[name] = p
	return p, nil
}

func (r *Runtime) newProvider(name string, pc config.Provider, key string) (provider.Provider, error) {
	p, err := provider.New(name, provider.Config{
		Kind: pc.Kind, BaseURL: pc.BaseURL, APIKey: key, Script: pc.Script,
		Timeout: secondsDuration(pc.TimeoutSeconds), MaxRetries: pc.MaxRetries,
	}, &r.popts)
	if err != nil {
		return nil, err // provider.New names the provider already
	}
	return p, nil
}

// Model is a resolved [[models]] entry.
type Model struct {
	ID       string
	Provider string
	Name     string // sent to the provider
	Cost     config.Cost
}

// Cost estimates USD for a call's usage.
func (m Model) CostOf(in, out int64) float64 {
	return float64(in)*m.Cost.Input/1e6 + float64(out)*m.Cost.Output/1e6
}

func (r *Runtime) model(id string) (Model, bool) {
	m, ok := r.cfg.ModelByID(id)
	if !ok {
		return Model{}, false
	}
	name := m.Name
	if name == "" {
		name = id
		if i := strings.IndexByte(id, '/'); i >= 0 {
			name = id[i+1:]
		}
	}
	return Model{ID: m.ID, Provider: m.Provider, Name: name, Cost: m.Cost}, true
}

// ResolveModel picks the model of a turn: the call's model, then (for a
// child) the agent's subagents.model, the agent's model, then
// agents.defaults.subagents.model (child) and agents.defaults.model. A
// named model that is not configured is skipped with a warning.
func (r *Runtime) ResolveModel(callModel, agentID string, child bool) (Model, []string, error) {
	type cand struct{ id, from string }
	var cands []cand
	cands = append(cands, cand{callModel, "the call's model"})
	for i, a := range r.cfg.Agents.List {
		if a.ID == agentID {
			if child {
				cands = append(cands, cand{a.Subagents.Model, fmt.Sprintf("agents.list[%d].subagents.model", i)})
			}
			cands = append(cands, cand{a.Model, fmt.Sprintf("agents.list[%d].model", i)})
		}
	}
	if child {
		cands = append(cands, cand{r.cfg.Agents.Defaults.Subagents.Model, "agents.defaults.subagents.model"})
	}
	cands = append(cands, cand{r.cfg.Agents.Defaults.Model, "agents.defaults.model"})
	var warnings []string
	for _, c := range cands {
		if c.id == "" {
			continue
		}
		if m, ok := r.model(c.id); ok {
			return m, warnings, nil
		}
		warnings = append(warnings, fmt.Sprintf("model %q (%s) is not configured in [[models]] (known: %s); skipped", c.id, c.from, r.modelIDs()))
	}
	if len(r.cfg.Models) == 0 {
		return Model{}, warnings, errors.New("no model to run with: this config has no [[models]]; add a [[models]] entry and agents.defaults.model (README: Configuration), or try `sessionplane demo` / --config testdata/demo.toml (no API key)")
	}
	return Model{}, warnings, fmt.Errorf("no model to run with: set agents.defaults.model to one of [[models]] (known: %s), or pass model", r.modelIDs())
}

func (r *Runtime) modelIDs() string {
	var ids []string
	for _, m := range r.cfg.Models {
		ids = append(ids, m.ID)
	}
	if len(ids) == 0 {
		return "none: add a [[models]] entry"
	}
	sort.Strings(ids)
	return strings.Join(ids, ", ")
}

// ResolveThinking picks a child's thinking level: the call's, the agent's
// subagents.thinking, agents.defaults.subagents.thinking, else none.
func (r *Runtime) ResolveThinking(call, agentID string) (string, error) {
	if call != "" {
		for _, l := range config.ThinkingLevels {
			if call == l {
				return call, nil
			}
		}
		return "", fmt.Errorf("thinking %q is not a level: use one of %s", call, strings.Join(config.ThinkingLevels, ", "))
	}
	if a, ok := r.cfg.Agent(agentID); ok && a.Subagents.Thinking != "" {
		return a.Subagents.Thinking, nil
	}
	return r.cfg.Agents.Defaults.Subagents.Thinking, nil
}

func secondsDuration(s int) time.Duration { return time.Duration(s) * time.Second }
