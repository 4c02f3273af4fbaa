// Package policy owns the one gate every tool call passes — from the MCP
// client or from a child agent — before dispatch: TOML presets (tool
// allow/deny, session access, send rights, tool controls), the sub-agent
// default deny set, cross-agent spawn rights and approval by action class.
// Deny wins, and anything that cannot be evaluated is denied.
package policy

import (
	"context"
	"fmt"
	"strings"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// Class is a tool's action class (seed 001).
type Class string

// Action classes.
const (
	ClassRead   Class = "read-session"
	ClassMutate Class = "mutate-session"
	ClassSpawn  Class = "spawn-subagent"
)

// Layer is one set of rules in force for a caller. A caller is bound by
// every layer it carries: the effective policy is their intersection, so a
// child (parent layers + its own) can never do more than its parent.
//
// A layer is authority as data: runs store their callers' layers and any
// process may execute them later. A layer made from a preset (FromPreset)
// is a reference by name: Engine.Refresh re-reads its rules from the
// configuration in force when the run executes, and a preset that no longer
// exists fails closed. Other layers (a call's allow_tools/deny_tools) carry
// their rules inline.
type Layer struct {
	Name       string        `json:"name"`                  // preset name, or a call-level name like "the call's allow_tools/deny_tools"
	Path       string        `json:"path"`                  // config key path that would change it, e.g. agents.presets.observer
	Preset     config.Preset `json:"preset"`                // the rules
	FromPreset bool          `json:"from_preset,omitempty"` // Name is a preset, re-resolved by name (Refresh)
	// Source is the session key of the principal whose authority brought
	// this layer in ("" = the caller's own), for explanations.
	Source string `json:"source,omitempty"`
	// Agent is the agent of that principal ("" = the caller's own). A
	// layer's cross_agent rule is judged for its own principal's agent: a
	// child spawned under another agent never reads that agent's sessions
	// unless the spawner's layers allow cross-agent access.
	Agent string `json:"agent,omitempty"`
}

// Caller is who is calling a tool.
type Caller struct {
	Key     string  // the caller's session key (agent:main:main for the MCP client)
	AgentID string  // the agent it acts as
	Depth   int     // 0 = a main session / the MCP client; n = a child n levels down
	Layers  []Layer // policy layers in force (none = no policy: everything allowed)
	Client  bool    // the call comes from the MCP client (it can be asked for approval)
	RunID   string  // the child run making the call, if any
	// Active, when non-nil, is the set of tools the child model was shown
	// (active_tools); a call to any other tool is refused before dispatch.
	Active []string
	// Via lists the agents of the principals whose work caused this caller
	// (a spawner, a sender, a cron job's creator, transitively), besides
	// AgentID. Rules judged per agent (visibility "agent", allow_agents)
	// must hold for each of them, so work started under another agent never
	// does more than its initiator's agent may.
	Via []string
}

// Chain returns who a caller's own work is bounded by, for work it causes:
// its agent and every agent in its Via, without repeats.
func (c Caller) Chain() []string {
	out := make([]string, 0, len(c.Via)+1)
	for _, a := range append(append([]string{}, c.Via...), c.AgentID) {
		if a != "" && !contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Inherit returns the layers of c for work c causes: each marked with c's
// session and agent where it names none yet (a layer keeps the principal
// that first brought it in).
func (c Caller) Inherit() []Layer {
	out := make([]Layer, len(c.Layers))
	for i, l := range c.Layers {
		if l.Source == "" {
			l.Source = c.Key
		}
		if l.Agent == "" {
			l.Agent = c.AgentID
		}
		out[i] = l
	}
	return out
}

// Targets is what a call's arguments name, for the checks that depend on them.
type Targets struct {
	Read  []string // session keys read
	Write []string // session keys written to (needs can_send)
	Role  string   // message role for sends ("system" needs can_send_system)
	Agent string   // agent id a spawn targets ("" = the caller's own)
}

// Effect is the outcome of a decision.
type Effect int

// Effects.
const (
	Deny Effect = iota
	Allow
	Ask // allowed once the human approves (see Decision.Mode)
)

// Decision is the gate's answer.
type Decision struct {
	Effect  Effect
	Rule    string // the rule that decided a denial, e.g. "sessions.key_prefix"
	Hint    string // the config key (and value) that would change it
	Message string // a sentence a person or model can act on
	Mode    string // approval mode when Effect is Ask or the call needed approval: auto | elicit
}

// Allowed reports whether the decision lets the call through without asking.
func (d Decision) Allowed() bool { return d.Effect == Allow }

func deny(rule, hint, format string, args ...any) Decision {
	return Decision{Effect: Deny, Rule: rule, Hint: hint, Message: fmt.Sprintf(format, args...)}
}

var allow = Decision{Effect: Allow}

// Sessions is what the gate needs to know about stored sessions.
type Sessions interface {
	// Owner returns the agent id a session belongs to ("" when it has none);
	// ok is false when the session does not exist.
	Owner(ctx context.Context, key string) (agent string, ok bool, err error)
	// IsDescendant reports whether key was spawned, transitively, by ancestor.
	IsDescendant(ctx context.Context, ancestor, key string) (bool, error)
}

// Canonical writes a tool name the one way the gate compares it: snake case.
func Canonical(name string) string { return strings.ReplaceAll(strings.TrimSpace(name), "-", "_") }

// Toolsets are the named tool sets (seed 001) usable in any tool list.
var Toolsets = map[string][]string{
	"toolset.starter_read":      {"sessions_list", "sessions_history", "session_status"},
	"toolset.controlled_write":  {"sessions_send", "sessions_yield"},
	"toolset.workflow_operator": {"sessions_spawn", "subagents"},
}

// SubagentDefaultDeny is what a child may never call unless it is an
// orchestrator (SPEC §4).
var SubagentDefaultDeny = []string{"sessions_list", "sessions_history", "sessions_send", "sessions_spawn",
	"spawn_agent", "agents_list", "session_status", "cron"}

// spawnTools are what an orchestrator child gets back from the default deny
// set; controlTools are denied to leaves on top of it (they have no children).
var (
	spawnTools   = []string{"sessions_spawn", "spawn_agent"}
	controlTools = []string{"subagents", "spawn_status", "spawn_result", "spawn_list", "cancel_spawn"}
)

// Expand canonicalises a tool list and expands toolset names. It keeps the
// difference between nil ("not set": no filter) and an empty list ("set to
// nothing": no tool), which active_tools depends on.
func Expand(list []string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, 0, len(list))
	for _, n := range list {
		c := Canonical(n)
		if set, ok := Toolsets[c]; ok {
			out = append(out, set...)
			continue
		}
		out = append(out, c)
	}
	return out
}

// matches reports whether tool is named by the (expanded) list; a name
// ending in "__*" matches every tool of that downstream server.
func matches(list []string, tool string) bool {
	for _, n := range list {
		if n == tool || (strings.HasSuffix(n, "__*") && strings.HasPrefix(tool, strings.TrimSuffix(n, "*"))) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Denied is an error a handler returns when a check inside it (for example
// on a session it resolved itself) refuses the call.
type Denied struct{ Decision Decision }

func (d *Denied) Error() string { return d.Decision.Message }

// Check turns a decision into an error (nil when allowed).
func Check(d Decision) error {
	if d.Allowed() {
		return nil
	}
	return &Denied{Decision: d}
}
