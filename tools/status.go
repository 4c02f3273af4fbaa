package tools

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
)

// ---- session_status ----

// StatusIn is the input of session_status.
type StatusIn struct {
	Key string `json:"key,omitempty" jsonschema:"session key (default: yours)"`
}

// Targets names the session read, for the gate.
func (in StatusIn) Targets() policy.Targets {
	if in.Key != "" {
		return policy.Targets{Read: []string{in.Key}}
	}
	return policy.Targets{}
}

// ActiveRun is the run a session is busy with.
type ActiveRun struct {
	RunID     string `json:"runId"`
	State     string `json:"state"`
	StartedAt int64  `json:"startedAt,omitempty"`
}

// StatusOut is the output of session_status.
type StatusOut struct {
	Key              string     `json:"key"`
	SessionID        string     `json:"sessionId"`
	Kind             string     `json:"kind"`
	AgentID          string     `json:"agentId"`
	Label            string     `json:"label"`
	Status           string     `json:"status"`
	Role             string     `json:"role" jsonschema:"main, orchestrator (may spawn) or leaf"`
	Depth            int        `json:"depth"`
	RiskLevel        string     `json:"riskLevel" jsonschema:"low, medium or high (see README: Risk level)"`
	Model            string     `json:"model"`
	ModelServed      string     `json:"modelServed,omitempty" jsonschema:"the model the provider says answered last"`
	ModelWarning     string     `json:"modelWarning,omitempty" jsonschema:"set when modelServed differs from model"`
	Thinking         string     `json:"thinking"`
	Preset           string     `json:"preset"`
	ParentKey        string     `json:"parentKey"`
	MessageCount     int        `json:"messageCount"`
	Tokens           Tokens     `json:"tokens"`
	EstimatedCostUSD float64    `json:"estimatedCostUsd"`
	ActiveRun        *ActiveRun `json:"activeRun,omitempty"`
	Children         []string   `json:"children"`
	CreatedAt        int64      `json:"createdAt"`
	UpdatedAt        int64      `json:"updatedAt"`
	ArchivedAt       int64      `json:"archivedAt,omitempty"`
	ExpiresAt        int64      `json:"expiresAt,omitempty" jsonschema:"when a finished child session will be archived (ms)"`
	ForkedFrom       string     `json:"forkedFrom,omitempty" jsonschema:"the session this one was forked from"`
	ForkedAtSeq      int64      `json:"forkedAtSeq,omitempty" jsonschema:"the last seq copied from it"`
	TranscriptURI    string     `json:"transcriptUri"`
	// Budget: the limits in force for the session's latest run, spent and left.
	Budget []spruntime.BudgetLine `json:"budget,omitempty"`
}

func sessionStatus(ctx context.Context, call *Call, in StatusIn) (StatusOut, string, error) {
	key := in.Key
	if key == "" {
		key = call.Caller.Key
	}
	if key == "" {
		return resolveSessionErr(ctx, call)
	}
	key, err := sessionKey(call, key)
	if err != nil {
		return StatusOut{}, "", err
	}
	// One statement for the session row, its runs and its children.
	s, sr, err := call.Env.Store.SessionStatus(ctx, key)
	if s, err = foundSession(ctx, call, s, err, key, ""); err != nil {
		return StatusOut{}, "", err
	}
	cfg := call.Env.Config
	out := StatusOut{
		Key: s.Key, SessionID: s.ID, Kind: s.Kind, AgentID: s.AgentID, Label: s.Label, Status: s.Status,
		Depth: s.Depth, Model: s.Model, Thinking: s.Thinking, Preset: s.Preset, ParentKey: s.ParentKey,
		MessageCount: s.MessageCount, Tokens: Tokens{In: s.TokensIn, Out: s.TokensOut, Total: s.TokensIn + s.TokensOut},
		EstimatedCostUSD: s.CostUSD, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, ArchivedAt: s.ArchivedAt,
		TranscriptURI: SessionURI(s.Key), ModelServed: s.ModelServed, ForkedFrom: s.ForkedFrom, ForkedAtSeq: s.ForkedAtSeq,
	}
	if call.Env.Runtime != nil {
		out.ModelWarning = call.Env.Runtime.ModelServedWarning(s.Model, s.ModelServed)
	}
	switch {
	case s.Depth == 0:
		out.Role = "main"
	case s.Depth < cfg.Agents.Defaults.Subagents.MaxSpawnDepth:
		out.Role = "orchestrator"
	default:
		out.Role = "leaf"
	}
	out.RiskLevel = riskLevel(call, s.Depth, s.Preset, out.Role)
	out.Children = []string{}
	for _, k := range sr.Children { // only the children the caller may see
		if call.Env.Policy.Access(ctx, call.Caller, k).Allowed() {
			out.Children = append(out.Children, k)
		}
	}
	if a := sr.Active; a != nil {
		out.ActiveRun = &ActiveRun{RunID: a.ID, State: a.State, StartedAt: a.StartedAt}
	}
	if last := sr.Last; last != nil {
		if s.ArchivedAt == 0 && out.ActiveRun == nil && s.Depth > 0 && last.EndedAt != 0 &&
			last.Cleanup != "delete" && cfg.Agents.Defaults.Subagents.ArchiveAfterMinutes > 0 {
			out.ExpiresAt = last.EndedAt + int64(cfg.Agents.Defaults.Subagents.ArchiveAfterMinutes)*60_000
		}
		out.Budget = runBudget(ctx, call, last)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Session %s (%s, agent %s)\nStatus: %s · role %s · depth %d · risk %s\n", out.Key, out.Kind, out.AgentID, out.Status, out.Role, out.Depth, out.RiskLevel)
	if out.Model != "" {
		fmt.Fprintf(&b, "Model: %s", out.Model)
		if out.Thinking != "" {
			fmt.Fprintf(&b, " (thinking %s)", out.Thinking)
		}
		if out.ModelServed != "" {
			fmt.Fprintf(&b, " · served %s", out.ModelServed)
		}
		b.WriteString("\n")
	}
	if out.ModelWarning != "" {
		fmt.Fprintf(&b, "Warning: %s\n", out.ModelWarning)
	}
	fmt.Fprintf(&b, "Messages: %d · tokens %s (in %s / out %s) · est $%.4f\n", out.MessageCount, humanTokens(out.Tokens.Total), humanTokens(out.Tokens.In), humanTokens(out.Tokens.Out), out.EstimatedCostUSD)
	if out.ActiveRun != nil {
		fmt.Fprintf(&b, "Active run: %s (%s)\n", out.ActiveRun.RunID, out.ActiveRun.State)
	}
	if len(out.Children) > 0 {
		fmt.Fprintf(&b, "Children: %s\n", strings.Join(out.Children, ", "))
	}
	if line := renderBudget(out.Budget); line != "" {
		b.WriteString(line + "\n")
	}
	if out.ForkedFrom != "" {
		fmt.Fprintf(&b, "Forked from: %s at seq %d\n", out.ForkedFrom, out.ForkedAtSeq)
	}
	fmt.Fprintf(&b, "Transcript: %s", out.TranscriptURI)
	return out, b.String(), nil
}

// resolveSessionErr is resolveSession's answer to a call without a key.
func resolveSessionErr(ctx context.Context, call *Call) (StatusOut, string, error) {
	_, err := resolveSession(ctx, call, "", "")
	return StatusOut{}, "", err
}

// riskLevel: high when the session's policy may send role=system or reach
// other agents' sessions; low for leaf children and sessions whose preset
// allows only read tools; medium otherwise.
func riskLevel(call *Call, depth int, preset, role string) string {
	if preset != "" {
		if p, ok := call.Env.Config.Agents.Presets[preset]; ok {
			s := p.Sessions
			if (s.CanSendSystem != nil && *s.CanSendSystem) || (s.CrossAgent != nil && *s.CrossAgent) {
				return "high"
			}
			if len(p.Tools.Allow) > 0 {
				readOnly := true
				for _, n := range policy.Expand(p.Tools.Allow) {
					if t, ok := call.registry().Get(n); !ok || t.Class != policy.ClassRead {
						readOnly = false
					}
				}
				if readOnly {
					return "low"
				}
			}
		}
	}
	if role == "leaf" && depth > 0 {
		return "low"
	}
	return "medium"
}

// ---- agents_list ----

// AgentsIn is the input of agents_list (no arguments).
type AgentsIn struct{}

// AgentInfo is one agent sessions_spawn may target.
type AgentInfo struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Configured bool   `json:"configured" jsonschema:"the agent has an [[agents.list]] entry"`
	Model      string `json:"model" jsonschema:"the model its sub-agents run with by default"`
}

// AgentsOut is the output of agents_list.
type AgentsOut struct {
	Requester string      `json:"requester" jsonschema:"the caller's agent id"`
	AllowAny  bool        `json:"allowAny" jsonschema:"allow_agents contains \"*\": any agent id may be targeted"`
	Agents    []AgentInfo `json:"agents"`
}

func agentsList(ctx context.Context, call *Call, _ AgentsIn) (AgentsOut, string, error) {
	cfg := call.Env.Config
	me := call.Caller.AgentID
	allowed, _ := call.Env.Policy.AllowedAgents(me)
	out := AgentsOut{Requester: me, Agents: []AgentInfo{}}
	ids := map[string]bool{me: true}
	for _, a := range allowed {
		if a == "*" {
			out.AllowAny = true
			continue
		}
		ids[a] = true
	}
	if out.AllowAny {
		for _, a := range cfg.Agents.List {
			ids[a.ID] = true
		}
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Slice(sorted, func(i, j int) bool {
		if (sorted[i] == me) != (sorted[j] == me) {
			return sorted[i] == me
		}
		return sorted[i] < sorted[j]
	})
	for _, id := range sorted {
		info := AgentInfo{ID: id}
		if a, ok := cfg.Agent(id); ok {
			info.Configured, info.Name = true, a.Name
		}
		info.Model, _ = cfg.SubagentModel(id)
		out.Agents = append(out.Agents, info)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Agents %s may spawn under", me)
	if out.AllowAny {
		b.WriteString(" (allow_agents = [\"*\"]: any agent id)")
	}
	b.WriteString(":\n")
	for _, a := range out.Agents {
		name := a.Name
		if name == "" {
			name = "(not configured)"
		}
		model := a.Model
		if model == "" {
			model = "no model configured"
		}
		fmt.Fprintf(&b, "- %s: %s · %s\n", a.ID, name, model)
	}
	return out, strings.TrimSpace(b.String()), nil
}
