package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// ChildSpec asks for a child agent run under a requester.
type ChildSpec struct {
	Parent   policy.Caller // the requester; its layers bound the child
	Task     string
	Context  string // prepended to the task as [From: <context>] when set
	Label    string
	AgentID  string // "" = the requester's agent
	Model    string // "" = resolved from the config
	Thinking string
	Preset   string // the spawn's preset, on top of the agent's
	// Call-level tool controls and allow/deny (spawn_agent).
	ActiveTools  []string
	ToolChoice   *policy.Choice
	AllowTools   []string
	DenyTools    []string
	OutputSchema json.RawMessage
	Timeout      time.Duration // 0 = the preset's timeout_secs, else none
	// ContextMode "fork" starts the child from a copy of the requester's
	// transcript ("" or "none": from its task only).
	ContextMode string
	// Budget is the spawn's own spending limit (zero = none).
	Budget config.Budget
	// Record, when set, gives the transcript record of the tool call that
	// spawns (nil: none) for the ticket it will return; it is written in
	// the run's own transaction.
	Record func(*Ticket) *store.CallRecord
}

// Child is a prepared child run: its identity, model, prompt and controls
// are resolved, and Session is the row to create with its run.
type Child struct {
	Key          string
	SessionID    string
	Session      store.Session
	Caller       policy.Caller
	Turn         Turn
	Thinking     string
	Preset       string
	Timeout      time.Duration
	Warnings     []string
	Orchestrator bool
}

// ChildKey makes a child's session key: agent:<agent>:subagent:<uuid>, or
// the parent's key plus :subagent:<uuid> when the parent is itself a child.
func ChildKey(parent policy.Caller, agentID string) string {
	// A v7 uuid grows with time, so a new child's key lands at the end of
	// every index keyed by it (sessions, messages, runs_child) instead of
	// on a random page of each: one hot page per index for a burst of
	// spawns.
	id := uuid.Must(uuid.NewV7()).String()
	if parent.Depth > 0 && agentID == parent.AgentID {
		return parent.Key + ":subagent:" + id
	}
	return "agent:" + agentID + ":subagent:" + id
}

// PrepareChild resolves everything a child run needs (nothing is written
// yet: Manager.Spawn records the session, task and run at once). The child's policy is the intersection of the requester's layers,
// its agent's preset, the spawn's preset and the call's allow/deny, so it can
// never do more than its requester.
func (r *Runtime) PrepareChild(ctx context.Context, gate *policy.Engine, spec ChildSpec) (*Child, error) {
	agentID := spec.AgentID
	if agentID == "" {
		agentID = spec.Parent.AgentID
	}
	model, warnings, err := r.ResolveModel(spec.Model, agentID, true)
	if err != nil {
		return nil, err
	}
	thinking, err := r.ResolveThinking(spec.Thinking, agentID)
	if err != nil {
		return nil, err
	}
	agentPreset := gate.AgentPreset(agentID)
	own, err := gate.Layers(agentPreset, spec.Preset)
	if err != nil {
		return nil, err
	}
	layers := policy.Bound(spec.Parent.Inherit(), own...)
	if len(spec.AllowTools) > 0 || len(spec.DenyTools) > 0 {
		var p policy.Layer
		p.Name, p.Path = "the call's allow_tools/deny_tools", "allow_tools/deny_tools"
		p.Preset.Tools.Allow, p.Preset.Tools.Deny = spec.AllowTools, spec.DenyTools
		layers = append(layers, p)
	}
	depth := spec.Parent.Depth + 1
	caller := policy.Caller{AgentID: agentID, Depth: depth, Layers: layers, Via: spec.Parent.Chain()}
	caller.Key = ChildKey(spec.Parent, agentID)

	// Tool controls: call > spawn preset > agent preset > default.
	levels := []policy.Controls{{Active: nilIfEmpty(spec.ActiveTools), Choice: spec.ToolChoice}}
	if p, ok := r.cfg.Agents.Presets[spec.Preset]; ok && spec.Preset != "" {
		levels = append(levels, policy.PresetControls(p))
	}
	if p, ok := r.cfg.Agents.Presets[agentPreset]; ok && agentPreset != "" {
		levels = append(levels, policy.PresetControls(p))
	}
	controls, err := policy.ResolveControls(levels...)
	if err != nil {
		return nil, fmt.Errorf("active_tools/tool_choice: %w", err)
	}
	if c := controls.Choice; c != nil && c.Type == "tool" {
		if d := gate.ToolDecision(caller, c.Name, ""); !d.Allowed() {
			return nil, fmt.Errorf("tool_choice forces %q, which this child may not call: %s", c.Name, d.Message)
		}
	}
	timeout := spec.Timeout
	if timeout == 0 && spec.Preset != "" {
		timeout = time.Duration(r.cfg.Agents.Presets[spec.Preset].TimeoutSecs) * time.Second
	}
	orchestrator := depth < r.cfg.Agents.Defaults.Subagents.MaxSpawnDepth
	sess := store.NewSession(store.Session{
		Key: caller.Key, AgentID: agentID, Kind: store.KindSubagent, Label: spec.Label, ParentKey: spec.Parent.Key,
		SpawnedBy: spec.Parent.Key, Depth: depth, Model: model.ID, Thinking: thinking, Preset: spec.Preset, Status: "queued",
	})
	if err := r.forkContext(ctx, &sess, spec); err != nil {
		return nil, err
	}
	var toolNames []string
	if tb := r.toolbox(); tb != nil {
		offered := tb.Offer(ctx, caller)
		if controls.Active != nil {
			offered = filterSpecs(offered, controls.Active)
		}
		for _, s := range offered {
			toolNames = append(toolNames, s.Name)
		}
	}
	workspace := ""
	if a, ok := r.cfg.Agent(agentID); ok {
		workspace = a.Workspace
	}
	prompt := ChildPrompt{SessionKey: caller.Key, RequesterKey: spec.Parent.Key, Label: spec.Label, Depth: depth,
		Orchestrator: orchestrator, Tools: toolNames, Workspace: workspace}
	if len(spec.OutputSchema) > 0 {
		if _, err := CompileSchema(spec.OutputSchema); err != nil {
			return nil, err
		}
		prompt.OutputSchema = string(spec.OutputSchema)
	}
	input := spec.Task
	if spec.Context != "" {
		input = "[From: " + spec.Context + "]\n\n" + input
	}
	return &Child{
		Key: caller.Key, SessionID: sess.ID, Session: sess, Caller: caller, Thinking: thinking, Preset: spec.Preset,
		Timeout: timeout, Warnings: warnings, Orchestrator: orchestrator,
		Turn: Turn{
			SessionKey: caller.Key, Caller: caller, Model: model, System: prompt.SystemPrompt(), Thinking: thinking,
			Controls: controls, Input: input, InputRole: store.RoleUser, InputTrust: store.TrustInterSession,
			OutputSchema: spec.OutputSchema, Budget: spec.Budget,
		},
	}, nil
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strings.TrimSpace(x)
	}
	return out
}
