package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
)

// ExplainIn is the input of policy_explain.
type ExplainIn struct {
	Tool   string         `json:"tool,omitempty" jsonschema:"a tool (default: every tool)"`
	Key    string         `json:"key,omitempty" jsonschema:"a session key the call would name"`
	Preset string         `json:"preset,omitempty" jsonschema:"add this preset to yours (narrows only)"`
	Spawn  map[string]any `json:"spawn,omitempty" jsonschema:"a spawn's arguments (tool, agentId, model, thinking, preset, allow_tools, deny_tools, active_tools, tool_choice, timeoutSeconds, budget)"`
}

// DecodeExplainSpawn reads policy_explain's spawn argument strictly.
func DecodeExplainSpawn(v any) (ExplainSpawn, error) {
	var sp ExplainSpawn
	b, err := json.Marshal(v)
	if err != nil {
		return sp, fmt.Errorf("spawn: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sp); err != nil {
		return sp, fmt.Errorf("spawn: %v (the keys are those of sessions_spawn/spawn_agent, plus tool)", err)
	}
	if sp.Tool != "" && sp.Tool != "sessions_spawn" && sp.Tool != "spawn_agent" {
		return sp, fmt.Errorf("spawn.tool %q: use sessions_spawn or spawn_agent", sp.Tool)
	}
	return sp, nil
}

// ExplainSpawn is the spawn policy_explain evaluates.
type ExplainSpawn struct {
	Tool           string    `json:"tool,omitempty"`
	AgentID        string    `json:"agentId,omitempty"`
	Model          string    `json:"model,omitempty"`
	Thinking       string    `json:"thinking,omitempty"`
	Preset         string    `json:"preset,omitempty"`
	AllowTools     []string  `json:"allow_tools,omitempty"`
	DenyTools      []string  `json:"deny_tools,omitempty"`
	ActiveTools    []string  `json:"active_tools,omitempty"`
	ToolChoice     *ChoiceIn `json:"tool_choice,omitempty"`
	TimeoutSeconds int       `json:"timeoutSeconds,omitempty"`
	Budget         *BudgetIn `json:"budget,omitempty"`
}

// ExplainDecision is one answer of the gate, with the rule and the config
// key behind it.
type ExplainDecision struct {
	Subject   string `json:"subject" jsonschema:"what was asked, e.g. tool sessions_send key agent:main:x"`
	Effect    string `json:"effect" jsonschema:"allow, ask (allowed after approval) or deny"`
	Rule      string `json:"rule,omitempty"`
	ConfigKey string `json:"configKey,omitempty" jsonschema:"the config key that would change it"`
	Message   string `json:"message"`
}

// ExplainChild is what a spawned child would get.
type ExplainChild struct {
	ExplainDecision
	AgentID        string   `json:"agentId,omitempty"`
	Model          string   `json:"model,omitempty"`
	Thinking       string   `json:"thinking,omitempty"`
	Depth          int      `json:"depth,omitempty"`
	Role           string   `json:"role,omitempty" jsonschema:"orchestrator or leaf"`
	Layers         []string `json:"layers,omitempty"`
	Tools          []string `json:"tools,omitempty" jsonschema:"the tools its model is offered"`
	ToolChoice     string   `json:"toolChoice,omitempty"`
	TimeoutSeconds int      `json:"timeoutSeconds,omitempty"`
	Warnings       []string `json:"warnings,omitempty"`
	Budget         []string `json:"budget,omitempty" jsonschema:"spending limits in force (config key)"`
}

// ExplainOut is the output of policy_explain.
type ExplainOut struct {
	Caller       string            `json:"caller"`
	Depth        int               `json:"depth"`
	Layers       []string          `json:"layers" jsonschema:"policy layers in force: preset (config key)"`
	Decisions    []ExplainDecision `json:"decisions"`
	AllowedTools []string          `json:"allowedTools,omitempty" jsonschema:"with no tool: the tools you may call"`
	Spawn        *ExplainChild     `json:"spawn,omitempty"`
}

func layerNames(ls []policy.Layer) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%s (%s)", l.Name, l.Path))
	}
	return out
}

// explainDecision renders a gate decision; an allow names the layers that
// let it through and the approval in force.
func explainDecision(subject string, d policy.Decision, c policy.Caller, approval string) ExplainDecision {
	e := ExplainDecision{Subject: subject, Rule: d.Rule, ConfigKey: d.Hint, Message: d.Message}
	switch d.Effect {
	case policy.Deny:
		e.Effect = "deny"
	case policy.Ask:
		e.Effect = "ask"
		e.Message = fmt.Sprintf("allowed after approval: %s = %q (auto proceeds with a note when the client cannot be asked; elicit then refuses)", d.Hint, d.Mode)
	default:
		e.Effect = "allow"
		layers := "no policy layer (everything allowed)"
		if len(c.Layers) > 0 {
			layers = "no layer denies it (" + strings.Join(layerNames(c.Layers), ", ") + ")"
		}
		e.Message = "allowed: " + layers + approval
	}
	return e
}

// denial turns a handler-side refusal (an error) into a decision.
func denial(err error) policy.Decision {
	var den *policy.Denied
	if errors.As(err, &den) {
		d := den.Decision
		d.Effect = policy.Deny
		return d
	}
	return policy.Decision{Effect: policy.Deny, Rule: "invalid", Message: err.Error()}
}

func policyExplain(ctx context.Context, call *Call, in ExplainIn) (ExplainOut, string, error) {
	gate := call.Env.Policy
	c := call.Caller
	if in.Preset != "" {
		extra, err := gate.Layers(in.Preset)
		if err != nil {
			return ExplainOut{}, "", fmt.Errorf("preset: %w", err)
		}
		c.Layers = append(append([]policy.Layer{}, c.Layers...), extra...)
	}
	out := ExplainOut{Caller: c.Key, Depth: c.Depth, Layers: layerNames(c.Layers), Decisions: []ExplainDecision{}}
	reg := call.registry()
	approval := func(class policy.Class) string {
		return fmt.Sprintf("; approval %s ([approval] %s)", gate.ApprovalMode(class), class)
	}
	// One tool, or every tool, judged by the gate exactly as a call would
	// be: the tool's own decoder and targets, then Decide.
	decide := func(t *Tool) ExplainDecision {
		var targets policy.Targets
		subject := "tool " + t.Name
		if in.Key != "" {
			subject += " key " + in.Key
			if args, err := t.decode(json.RawMessage(fmt.Sprintf(`{"key": %q}`, in.Key))); err == nil {
				targets = t.targets(args)
			}
		}
		return explainDecision(subject, gate.Decide(ctx, c, t.Name, t.Class, targets), c, approval(t.Class))
	}
	switch {
	case in.Tool != "":
		t, ok := reg.Get(in.Tool)
		if !ok {
			return ExplainOut{}, "", fmt.Errorf("tool: unknown tool %q (known: %s)", in.Tool, strings.Join(reg.Names(), ", "))
		}
		out.Decisions = append(out.Decisions, decide(t))
	case in.Key != "":
		for _, name := range []string{"sessions_history", "sessions_send"} {
			if t, ok := reg.Get(name); ok {
				out.Decisions = append(out.Decisions, decide(t))
			}
		}
	case in.Spawn == nil:
		for _, t := range reg.All() {
			if t.ChildOnly && c.Depth == 0 {
				continue
			}
			d := decide(t)
			if d.Effect == "deny" {
				out.Decisions = append(out.Decisions, d)
			} else {
				out.AllowedTools = append(out.AllowedTools, t.Name)
			}
		}
	}
	if in.Spawn != nil {
		sp, err := DecodeExplainSpawn(in.Spawn)
		if err != nil {
			return ExplainOut{}, "", err
		}
		out.Spawn = explainSpawn(ctx, call, c, sp)
	}
	return out, renderExplain(out), nil
}

// explainSpawn runs a spawn's checks — the gate, the handler's guards and
// the child's preparation — without starting anything.
func explainSpawn(ctx context.Context, call *Call, c policy.Caller, s ExplainSpawn) *ExplainChild {
	tool := s.Tool
	if tool == "" {
		tool = "sessions_spawn"
	}
	if tool == "spawn_agent" {
		s.AgentID, s.Thinking = "", "" // spawn_agent takes neither
	}
	ch := &ExplainChild{}
	subject := "spawn via " + tool
	t, ok := call.registry().Get(tool)
	if !ok {
		ch.ExplainDecision = ExplainDecision{Subject: subject, Effect: "deny", Rule: "invalid", Message: tool + " is not available"}
		return ch
	}
	d := call.Env.Policy.Decide(ctx, c, t.Name, t.Class, policy.Targets{Agent: s.AgentID})
	if d.Effect != policy.Deny {
		// The handler's own guards, in the handler's order (this Call has
		// no pending approval: Approve is a no-op). The children are
		// counted first, as the spawn's own transaction would.
		guard := &Call{Caller: c, Env: call.Env, reg: call.reg}
		err := childLimit(ctx, guard)
		if err == nil {
			err = spawnGuards(ctx, guard, s.AgentID, s.Thinking, "")
		}
		if err != nil {
			d = denial(err)
		}
	}
	approval := fmt.Sprintf("; approval %s ([approval] %s)", call.Env.Policy.ApprovalMode(t.Class), t.Class)
	ch.ExplainDecision = explainDecision(subject, d, c, approval)
	if d.Effect == policy.Deny {
		return ch
	}
	timeout := s.TimeoutSeconds
	if timeout == 0 {
		timeout = call.Env.Config.Agents.Defaults.Subagents.RunTimeoutSeconds
	}
	child, err := call.Env.Runtime.PrepareChild(ctx, call.Env.Policy, spruntime.ChildSpec{
		Parent: c, Task: "(policy_explain)", AgentID: s.AgentID, Model: s.Model, Thinking: s.Thinking, Preset: s.Preset,
		ActiveTools: s.ActiveTools, ToolChoice: s.ToolChoice.choice(), AllowTools: s.AllowTools, DenyTools: s.DenyTools,
		Timeout: time.Duration(timeout) * time.Second, Budget: s.Budget.budget(),
	})
	if err != nil {
		ch.ExplainDecision = explainDecision(subject, denial(err), c, "")
		return ch
	}
	ch.AgentID, ch.Model, ch.Thinking, ch.Depth = child.Caller.AgentID, child.Turn.Model.ID, child.Thinking, child.Caller.Depth
	ch.Role = "leaf"
	if child.Orchestrator {
		ch.Role = "orchestrator"
	}
	ch.Layers = layerNames(child.Caller.Layers)
	ch.Tools = call.Env.Runtime.OfferedTools(ctx, child.Caller, child.Turn.Controls.Active)
	if ch.Tools == nil {
		ch.Tools = []string{}
	}
	if tc := child.Turn.Controls.Choice; tc != nil {
		ch.ToolChoice = tc.Type
		if tc.Name != "" {
			ch.ToolChoice += ":" + tc.Name
		}
	}
	ch.TimeoutSeconds = int(child.Timeout / time.Second)
	ch.Warnings = child.Warnings
	ch.Budget = limitLines(call.Env.Runtime.ResolveLimits(child.Caller.AgentID, child.Caller.Layers, child.Turn.Budget))
	return ch
}

func renderExplain(out ExplainOut) string {
	var b strings.Builder
	layers := "none (no policy: everything allowed)"
	if len(out.Layers) > 0 {
		layers = strings.Join(out.Layers, ", ")
	}
	fmt.Fprintf(&b, "Caller %s (depth %d) · layers: %s\n", out.Caller, out.Depth, layers)
	line := func(d ExplainDecision) {
		fmt.Fprintf(&b, "%s: %s", d.Subject, d.Effect)
		if d.Effect != "allow" && d.Rule != "" {
			fmt.Fprintf(&b, " [rule %s]", d.Rule)
		}
		if d.Effect != "allow" && d.ConfigKey != "" {
			fmt.Fprintf(&b, " [config %s]", d.ConfigKey)
		}
		fmt.Fprintf(&b, " — %s\n", d.Message)
	}
	if len(out.AllowedTools) > 0 {
		fmt.Fprintf(&b, "Allowed tools: %s\n", strings.Join(out.AllowedTools, ", "))
	}
	for _, d := range out.Decisions {
		line(d)
	}
	if s := out.Spawn; s != nil {
		line(s.ExplainDecision)
		if s.Effect != "deny" {
			fmt.Fprintf(&b, "Child: agent %s · model %s · thinking %s · depth %d (%s) · timeout %ds · tool_choice %s\n",
				s.AgentID, s.Model, noneIfEmpty(s.Thinking), s.Depth, s.Role, s.TimeoutSeconds, s.ToolChoice)
			fmt.Fprintf(&b, "Child layers: %s\nChild tools: %s\n", noneIfEmpty(strings.Join(s.Layers, ", ")), noneIfEmpty(strings.Join(s.Tools, ", ")))
			fmt.Fprintf(&b, "Child budget: %s\n", noneIfEmpty(strings.Join(s.Budget, ", ")))
			for _, w := range s.Warnings {
				fmt.Fprintf(&b, "Warning: %s\n", w)
			}
		}
	}
	return strings.TrimSpace(b.String())
}

func noneIfEmpty(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ExplainTool is policy_explain.
func ExplainTool() *Tool {
	return Define(Meta{Name: "policy_explain", Title: "Explain the policy", Class: policy.ClassRead, Annotations: readOnly,
		Description: "What you (or a spawn) may do and why: the gate's decision, rule and config key per tool or session; a child's tools, model, limits."},
		policyExplain)
}

// Explain answers policy_explain for caller without the gate's check on
// policy_explain itself (the command line's `sessionplane policy explain`,
// run by whoever holds the config): every decision inside is the gate's.
func Explain(ctx context.Context, reg *Registry, caller policy.Caller, in ExplainIn) (ExplainOut, string, error) {
	return policyExplain(ctx, &Call{Caller: caller, Env: reg.Env(), reg: reg}, in)
}
