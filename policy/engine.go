package policy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"unicode"

	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Engine evaluates calls against the loaded configuration. It is safe for
// concurrent use.
type Engine struct {
	cfg      *config.Config
	sessions Sessions
	known    map[string]bool
	servers  map[string]bool
}

// New builds the gate for cfg. known lists every built-in tool name; tool
// names in the configuration that are neither known nor "<server>__<tool>"
// of a configured [[mcp_servers]] entry are reported as config errors.
func New(cfg *config.Config, sessions Sessions, known []string) (*Engine, error) {
	e := &Engine{cfg: cfg, sessions: sessions, known: map[string]bool{}, servers: map[string]bool{}}
	for _, k := range known {
		e.known[Canonical(k)] = true
	}
	for _, s := range cfg.MCPServers {
		// Server names may contain '-' (config allows it); tool names are
		// compared in their canonical (snake) form, so the server part is too.
		e.servers[Canonical(s.Name)] = true
	}
	if probs := e.validate(); len(probs) > 0 {
		return nil, &config.Error{File: cfg.Source(), Problems: probs}
	}
	return e, nil
}

// Config is the configuration the engine enforces.
func (e *Engine) Config() *config.Config { return e.cfg }

func (e *Engine) isKnown(name string) bool {
	c := Canonical(name)
	if e.known[c] {
		return true
	}
	if _, ok := Toolsets[c]; ok {
		return true
	}
	if srv, _, ok := strings.Cut(c, "__"); ok && e.servers[srv] {
		return true
	}
	return false
}

func (e *Engine) validate() []config.Problem {
	var probs []config.Problem
	check := func(path string, list []string) {
		for i, n := range list {
			if !e.isKnown(n) {
				p := fmt.Sprintf("%s[%d]", path, i)
				probs = append(probs, config.Problem{Path: p, Line: e.cfg.Line(path),
					Msg: fmt.Sprintf("unknown tool %q: use a tool name (%s), a toolset.* name, or <server>__<tool> of a [[mcp_servers]] entry", n, e.knownList())})
			}
		}
	}
	names := make([]string, 0, len(e.cfg.Agents.Presets))
	for n := range e.cfg.Agents.Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := e.cfg.Agents.Presets[n]
		base := "agents.presets." + n
		check(base+".tools.allow", p.Tools.Allow)
		check(base+".tools.deny", p.Tools.Deny)
		check(base+".tool_controls.active_tools", p.ToolControls.ActiveTools)
		if tc := p.ToolControls.ToolChoice; tc != nil && tc.Type == "tool" {
			path := base + ".tool_controls.tool_choice.name"
			if !e.isKnown(tc.Name) {
				probs = append(probs, config.Problem{Path: path, Line: e.cfg.Line(path), Msg: fmt.Sprintf("unknown tool %q", tc.Name)})
			}
			if _, err := ResolveControls(PresetControls(p)); err != nil {
				probs = append(probs, config.Problem{Path: base + ".tool_controls.tool_choice", Line: e.cfg.Line(path), Msg: err.Error()})
			}
		}
		if tc := p.ToolControls.ToolChoice; tc != nil && tc.Type == "tool" && len(p.Tools.Allow) > 0 && !matches(Expand(p.Tools.Allow), Canonical(tc.Name)) ||
			tc != nil && tc.Type == "tool" && matches(Expand(p.Tools.Deny), Canonical(tc.Name)) {
			path := base + ".tool_controls.tool_choice.name"
			probs = append(probs, config.Problem{Path: path, Line: e.cfg.Line(path),
				Msg: fmt.Sprintf("forced tool %q is not allowed by the preset's own tools.allow/tools.deny", tc.Name)})
		}
	}
	check("tools.subagents.tools.allow", e.cfg.Tools.Subagents.Tools.Allow)
	check("tools.subagents.tools.deny", e.cfg.Tools.Subagents.Tools.Deny)
	return probs
}

func (e *Engine) knownList() string {
	ks := make([]string, 0, len(e.known))
	for k := range e.known {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// Layers turns preset names into layers; an empty name is skipped and an
// unknown one is an error (fail closed).
func (e *Engine) Layers(names ...string) ([]Layer, error) {
	var out []Layer
	for _, n := range names {
		if n == "" {
			continue
		}
		p, ok := e.cfg.Agents.Presets[n]
		if !ok {
			return nil, fmt.Errorf("preset %q is not defined: add [agents.presets.%s] to the config", n, n)
		}
		out = append(out, Layer{Name: n, Path: "agents.presets." + n, Preset: p, FromPreset: true})
	}
	return out, nil
}

// isPresetRef reports whether l names a preset to re-resolve (runs stored
// before FromPreset existed are recognised by their path).
func isPresetRef(l Layer) bool {
	return l.FromPreset || strings.HasPrefix(l.Path, "agents.presets.")
}

// Refresh re-reads every preset layer from the configuration in force, so
// that a stored run (or cron job) is bound by the presets as they are when
// it executes, not as they were when it was queued. A preset that no longer
// exists is an error: the caller must refuse the work (fail closed).
// Inline layers are kept as they are.
func (e *Engine) Refresh(layers []Layer) ([]Layer, error) {
	if len(layers) == 0 {
		return layers, nil
	}
	out := make([]Layer, 0, len(layers))
	for _, l := range layers {
		if isPresetRef(l) {
			name := l.Name
			if !l.FromPreset { // stored before FromPreset: the path names it
				name = strings.TrimPrefix(l.Path, "agents.presets.")
			}
			p, ok := e.cfg.Agents.Presets[name]
			if !ok {
				return nil, fmt.Errorf("preset %q, part of this work's authority, is no longer defined in the config (add [agents.presets.%s] back; the work is refused: fail closed)", name, name)
			}
			l.Name, l.Path, l.Preset, l.FromPreset = name, "agents.presets."+name, p, true
		}
		out = append(out, l)
	}
	return out, nil
}

// Bound returns the layers of work caused by initiator and run under own
// (the target agent's and session's layers, or a child's): the initiator's
// layers (already carrying whatever bounded the initiator, transitively)
// followed by own. Preset layers that appear twice are kept once: the
// intersection is the same.
func Bound(initiator []Layer, own ...Layer) []Layer {
	out := make([]Layer, 0, len(initiator)+len(own))
	seen := map[string]bool{}
	for _, list := range [][]Layer{initiator, own} {
		for _, l := range list {
			if isPresetRef(l) {
				k := l.Name + "\x00" + l.Agent // the same preset judged for another agent is another rule
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			out = append(out, l)
		}
	}
	return out
}

// AgentPreset is the preset configured for an agent ("" when none).
func (e *Engine) AgentPreset(agentID string) string {
	if a, ok := e.cfg.Agent(agentID); ok {
		return a.Preset
	}
	return ""
}

// Decide is the gate: may caller run tool (of class) with these targets?
// Order: tool allow/deny, the sub-agent deny set, active_tools, session
// access, send rights, cross-agent spawn, then approval. Deny wins; an
// evaluation error denies.
func (e *Engine) Decide(ctx context.Context, c Caller, tool string, class Class, t Targets) Decision {
	if d := e.ToolDecision(c, tool, class); !d.Allowed() && d.Effect != Ask {
		return d
	}
	for _, k := range t.Read {
		if d := e.Access(ctx, c, k); !d.Allowed() {
			return d
		}
	}
	for _, k := range t.Write {
		if d := e.Access(ctx, c, k); !d.Allowed() {
			return d
		}
	}
	// Send rights apply to any call that writes, and role=system needs its
	// grant even when the call names no session to write to.
	if len(t.Write) > 0 || t.Role == "system" {
		if d := e.sendRights(c, t.Role, len(t.Write) > 0); !d.Allowed() {
			return d
		}
	}
	if t.Agent != "" && t.Agent != c.AgentID {
		if d := e.spawnAgentRights(c, t.Agent); !d.Allowed() {
			return d
		}
	}
	return e.approval(class, tool)
}

// ToolDecision answers for the tool alone (used to list tools): layer
// allow/deny, the sub-agent deny set, active_tools and an approval of "deny".
// Every layer's deny list is checked before any allow list, so an explicit
// deny is the rule reported whichever layer carries it.
func (e *Engine) ToolDecision(c Caller, tool string, class Class) Decision {
	name := Canonical(tool)
	for _, l := range c.Layers {
		if matches(Expand(l.Preset.Tools.Deny), name) {
			return deny("tools.deny", l.Path+".tools.deny",
				"tool %s is denied by %s (remove it from %s.tools.deny to allow it)", name, l.Name, l.Path)
		}
	}
	for _, l := range c.Layers {
		if len(l.Preset.Tools.Allow) > 0 && !matches(Expand(l.Preset.Tools.Allow), name) {
			return deny("tools.allow", l.Path+".tools.allow",
				"tool %s is not in the allow list of %s (add it to %s.tools.allow)", name, l.Name, l.Path)
		}
	}
	if c.Depth > 0 {
		if d := e.subagentTools(c, name); !d.Allowed() {
			return d
		}
	}
	if c.Active != nil && !matches(Expand(c.Active), name) {
		return deny("tool_controls.active_tools", "active_tools",
			"tool %s is not among the active tools of this run (%s); it was not offered to the model", name, strings.Join(c.Active, ", "))
	}
	if mode := e.ApprovalMode(class); mode == "deny" {
		return deny("approval."+string(class), "[approval] "+string(class),
			"tools of class %s are disabled: [approval] %s = \"deny\" (set it to none, auto or elicit)", class, class)
	}
	return allow
}

func (e *Engine) subagentTools(c Caller, name string) Decision {
	sub := e.cfg.Tools.Subagents.Tools
	if matches(Expand(sub.Deny), name) {
		return deny("tools.subagents.tools.deny", "tools.subagents.tools.deny",
			"sub-agents may not call %s: it is in tools.subagents.tools.deny", name)
	}
	orchestrator := c.Depth < e.cfg.Agents.Defaults.Subagents.MaxSpawnDepth
	denied := contains(SubagentDefaultDeny, name)
	if orchestrator && contains(spawnTools, name) {
		denied = false
	}
	if !orchestrator && contains(controlTools, name) {
		denied = true
	}
	if denied {
		role := "a leaf sub-agent"
		if orchestrator {
			role = "an orchestrator sub-agent"
		}
		if contains(spawnTools, name) || contains(controlTools, name) {
			return deny("subagents.default_deny", "agents.defaults.subagents.max_spawn_depth",
				"%s is in the sub-agent default deny set and this caller is %s (depth %d, agents.defaults.subagents.max_spawn_depth = %d): only orchestrators spawn and control children (raise agents.defaults.subagents.max_spawn_depth to let children at this depth spawn)",
				name, role, c.Depth, e.cfg.Agents.Defaults.Subagents.MaxSpawnDepth)
		}
		// No key lifts the rest of the set (tools.subagents.tools.allow
		// cannot): the main session is in charge of these tools.
		return deny("subagents.default_deny", "",
			"%s is in the sub-agent default deny set (%s) and this caller is %s (depth %d): no configuration key lifts it for a child; the main session is in charge of it",
			name, strings.Join(SubagentDefaultDeny, ", "), role, c.Depth)
	}
	if len(sub.Allow) > 0 && !matches(Expand(sub.Allow), name) {
		return deny("tools.subagents.tools.allow", "tools.subagents.tools.allow",
			"sub-agents may only call the tools in tools.subagents.tools.allow, and %s is not one", name)
	}
	return allow
}

// ResolveKey turns the aliases "main" and "current" into keys.
func ResolveKey(c Caller, key string) string {
	switch key {
	case "current":
		return c.Key
	case "main":
		if c.Client { // an MCP principal's "main" is its own session
			return c.Key
		}
		return "agent:" + c.AgentID + ":main"
	}
	return key
}

// ValidKey reports whether key is a well-formed session key: 1–512
// printable ASCII characters, no spaces (so look-alikes and padding never
// match a policy prefix by accident).
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("session key is empty")
	}
	if len(key) > 512 {
		return fmt.Errorf("session key is longer than 512 characters")
	}
	for _, r := range key {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			return fmt.Errorf("session key %q has a space or a character that is not printable ASCII (%q); keys look like agent:<agentId>:main", key, r)
		}
	}
	if strings.HasPrefix(key, ":") || strings.HasSuffix(key, ":") || strings.Contains(key, "::") {
		return fmt.Errorf("session key %q has an empty name between its ':' separators; keys look like agent:<agentId>:main", key)
	}
	return nil
}

// Access decides whether caller may read or address the session key:
// per layer allowed_keys, then key_prefix, then cross_agent; then
// tools.sessions.visibility for everyone.
//
// The aliases "main" and "current" are resolved first, and a caller always
// sees its own session (even when its preset's key_prefix would not match
// it, and under visibility "self"). Keys are compared as exact strings:
// nothing normalises case, padding or path-like segments, and ValidKey
// refuses spaces and non-ASCII look-alikes before any prefix is compared.
//
// A session belongs to another agent when either the agent id in its key
// (agent:<id>:...) or the owner recorded in the store differs from the
// caller's agent id: both are checked, so a mismatch between them can only
// narrow access.
func (e *Engine) Access(ctx context.Context, c Caller, key string) Decision {
	return e.access(ctx, c, key, false)
}

// ChildAccess decides whether caller may create (and so later read) the
// child session key it is about to spawn: Access, with the key counted as
// the caller's descendant for visibility "tree" (it will be one).
func (e *Engine) ChildAccess(ctx context.Context, c Caller, key string) Decision {
	return e.access(ctx, c, key, true)
}

// NewChildAccess is ChildAccess for a key no session can have yet (a
// child's key made just now around a new uuid, runtime.ChildKey): the
// same decision, without looking the key's stored owner up (there is
// none: the owner is the agent in the key).
func (e *Engine) NewChildAccess(ctx context.Context, c Caller, key string) Decision {
	return e.decideAccess(ctx, c, key, true, false)
}

func (e *Engine) access(ctx context.Context, c Caller, key string, child bool) Decision {
	return e.decideAccess(ctx, c, key, child, true)
}

// decideAccess is access; lookup false skips reading key's stored owner,
// for a key known to have no session.
func (e *Engine) decideAccess(ctx context.Context, c Caller, key string, child, lookup bool) Decision {
	key = ResolveKey(c, key)
	if err := ValidKey(key); err != nil {
		return deny("sessions.key", "", "%v", err)
	}
	if key == c.Key {
		return allow // a caller always sees itself
	}
	if e.sessions == nil {
		return deny("policy.error", "", "could not evaluate access to %s: the policy engine has no session store (denied)", key)
	}
	var stored string
	var ok bool
	if lookup {
		var err error
		if stored, ok, err = e.sessions.Owner(ctx, key); err != nil {
			return deny("policy.error", "", "could not evaluate access to %s: %v (denied)", key, err)
		}
	}
	owner := store.AgentOf(key)
	if ok && stored != "" && (owner == "" || owner == c.AgentID) {
		owner = stored // a stored owner that is another agent decides
	}
	for _, l := range c.Layers {
		s := l.Preset.Sessions
		if contains(s.AllowedKeys, key) {
			continue
		}
		if s.KeyPrefix != "" && !strings.HasPrefix(key, s.KeyPrefix) {
			return deny("sessions.key_prefix", l.Path+".sessions.key_prefix",
				"session %s is outside %s's key_prefix %q (widen %s.sessions.key_prefix or add the key to %s.sessions.allowed_keys)", key, l.Name, s.KeyPrefix, l.Path, l.Path)
		}
		agent := c.AgentID // a layer inherited from another principal is judged for that principal's agent
		if l.Agent != "" {
			agent = l.Agent
		}
		if owner != "" && owner != agent && (s.CrossAgent == nil || !*s.CrossAgent) {
			return deny("sessions.cross_agent", l.Path+".sessions.cross_agent",
				"session %s belongs to agent %q, not %q, and %s does not allow cross-agent access (set %s.sessions.cross_agent = true)", key, owner, agent, l.Name, l.Path)
		}
	}
	switch e.cfg.Tools.Sessions.Visibility {
	case "self":
		return deny("tools.sessions.visibility", "tools.sessions.visibility",
			"session %s is not visible: tools.sessions.visibility = \"self\" shows only the caller's own session (set it to tree, agent or all)", key)
	case "tree":
		if child {
			return allow
		}
		in, err := e.sessions.IsDescendant(ctx, c.Key, key)
		if err != nil {
			return deny("policy.error", "", "could not evaluate access to %s: %v (denied)", key, err)
		}
		if !in {
			return deny("tools.sessions.visibility", "tools.sessions.visibility",
				"session %s is not visible: tools.sessions.visibility = \"tree\" shows only the caller and the sessions it spawned (set it to agent or all)", key)
		}
	case "agent":
		for _, a := range c.Chain() { // the caller's agent and those of whoever caused its work
			if owner != a {
				return deny("tools.sessions.visibility", "tools.sessions.visibility",
					"session %s belongs to agent %q: tools.sessions.visibility = \"agent\" shows only agent %q's sessions (set it to all)", key, owner, a)
			}
		}
	case "all", "": // "" = not set: the documented default, all
	default:
		return deny("policy.error", "tools.sessions.visibility", "unknown visibility %q (denied)", e.cfg.Tools.Sessions.Visibility)
	}
	return allow
}

// sendRights checks can_send (every layer; default true) when the call
// writes, and can_send_system for role=system: that needs an explicit grant
// in every layer, and with no layer at all there is no grant.
func (e *Engine) sendRights(c Caller, role string, writes bool) Decision {
	if writes {
		for _, l := range c.Layers {
			if s := l.Preset.Sessions.CanSend; s != nil && !*s {
				return deny("sessions.can_send", l.Path+".sessions.can_send",
					"%s may not send to sessions: %s.sessions.can_send = false", l.Name, l.Path)
			}
		}
	}
	if role == "system" {
		if len(c.Layers) == 0 {
			return deny("sessions.can_send_system", "agents.presets.<name>.sessions.can_send_system",
				"role=system needs an explicit grant: apply a preset with sessions.can_send_system = true ([mcp] preset or --preset for the MCP client)")
		}
		for _, l := range c.Layers {
			if s := l.Preset.Sessions.CanSendSystem; s == nil || !*s {
				return deny("sessions.can_send_system", l.Path+".sessions.can_send_system",
					"role=system needs an explicit grant: set %s.sessions.can_send_system = true", l.Path)
			}
		}
	}
	return allow
}

// AllowedAgents is the list of agent ids caller may spawn under other than
// its own (["*"] = any).
func (e *Engine) AllowedAgents(agentID string) (list []string, path string) {
	for i, a := range e.cfg.Agents.List {
		if a.ID == agentID && a.Subagents.AllowAgents != nil {
			return a.Subagents.AllowAgents, fmt.Sprintf("agents.list[%d].subagents.allow_agents", i)
		}
	}
	return e.cfg.Agents.Defaults.Subagents.AllowAgents, "agents.defaults.subagents.allow_agents"
}

// SpawnAgent decides whether caller may spawn under agent target (its own
// agent always; another one by allow_agents).
func (e *Engine) SpawnAgent(c Caller, target string) Decision {
	if target == "" || target == c.AgentID {
		return allow
	}
	return e.spawnAgentRights(c, target)
}

// spawnAgentRights checks allow_agents for the caller's agent and for the
// agent of every principal whose work caused it: a child spawned under
// another agent cannot reach, through that agent's allow_agents, an agent
// its spawner could not.
func (e *Engine) spawnAgentRights(c Caller, target string) Decision {
	for _, a := range c.Chain() {
		if a == target {
			continue
		}
		list, path := e.AllowedAgents(a)
		if !contains(list, "*") && !contains(list, target) {
			return deny("subagents.allow_agents", path,
				"agent %q may not spawn under agent %q: add %q (or \"*\") to %s", a, target, target, path)
		}
	}
	return allow
}

// ApprovalMode is the configured approval for a class: none, auto, elicit
// or deny. Defaults: read none, mutate none, spawn auto.
func (e *Engine) ApprovalMode(class Class) string {
	if m, ok := e.cfg.Approval[string(class)]; ok && m != "" {
		return m
	}
	if class == ClassSpawn {
		return "auto"
	}
	return "none"
}

func (e *Engine) approval(class Class, tool string) Decision {
	switch mode := e.ApprovalMode(class); mode {
	case "none":
		return allow
	case "auto", "elicit":
		return Decision{Effect: Ask, Mode: mode, Rule: "approval." + string(class), Hint: "[approval] " + string(class)}
	case "deny":
		return deny("approval."+string(class), "[approval] "+string(class),
			"tools of class %s are disabled: [approval] %s = \"deny\"", class, class)
	default:
		return deny("policy.error", "[approval] "+string(class), "unknown approval mode %q for %s (denied)", mode, tool)
	}
}
