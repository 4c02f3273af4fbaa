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
	"github.com/sessionplane/sessionplane/runtime/store"
)

// ChoiceIn is tool_choice as a call passes it.
type ChoiceIn struct {
	Type string `json:"type" schema:"enum=auto|any|none|tool"`
	Name string `json:"name,omitempty" jsonschema:"with type tool"`
}

func (c *ChoiceIn) choice() *policy.Choice {
	if c == nil {
		return nil
	}
	return &policy.Choice{Type: c.Type, Name: c.Name}
}

// ---- sessions_spawn ----

// SpawnIn is the input of sessions_spawn.
type SpawnIn struct {
	Task              string    `json:"task" jsonschema:"what the sub-agent should do"`
	Label             string    `json:"label,omitempty" jsonschema:"short label for lists"`
	AgentID           string    `json:"agentId,omitempty" jsonschema:"another agent id (see agents_list)"`
	Model             string    `json:"model,omitempty" jsonschema:"model id from [[models]]"`
	Thinking          string    `json:"thinking,omitempty" jsonschema:"off, low, medium or high"`
	RunTimeoutSeconds int       `json:"runTimeoutSeconds,omitempty" jsonschema:"abort after N seconds (0 = configured default)" schema:"min=0,max=86400"`
	TimeoutSeconds    int       `json:"timeoutSeconds,omitempty" jsonschema:"alias of runTimeoutSeconds" schema:"min=0,max=86400"`
	Cleanup           string    `json:"cleanup,omitempty" jsonschema:"delete archives the child session after its announce" schema:"enum=keep|delete,default=keep"`
	Preset            string    `json:"preset,omitempty" jsonschema:"a preset for the child (narrows your policy)"`
	ActiveTools       []string  `json:"active_tools,omitempty" jsonschema:"the only tools the child model is shown"`
	ToolChoice        *ChoiceIn `json:"tool_choice,omitempty" jsonschema:"force tool use on the first model call"`
	Context           string    `json:"context,omitempty" schema:"enum=none|fork"`
	Budget            any       `json:"budget,omitempty"`
}

// ApprovalSummary is the task, for the approval prompt.
func (in SpawnIn) ApprovalSummary() string { return firstN(in.Task, 300) }

// SpawnOut is the output of sessions_spawn.
type SpawnOut struct {
	Status          string   `json:"status" jsonschema:"accepted"`
	RunID           string   `json:"runId"`
	ChildSessionKey string   `json:"childSessionKey"`
	ModelApplied    string   `json:"modelApplied" jsonschema:"the model the child runs with"`
	Warnings        []string `json:"warnings"`
	Note            string   `json:"note"`
}

func firstN(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func runsOf(call *Call) (*spruntime.Manager, error) {
	if call.Env.Runs == nil {
		return nil, errors.New("sub-agents are not available in this server (no run manager)")
	}
	return call.Env.Runs, nil
}

// spawnGuards applies the limits a spawn checks in its handler, in order:
// max_children_per_agent, allow_agents, thinking; then approval.
func spawnGuards(ctx context.Context, call *Call, agentID, thinking, summary string) error {
	cfg := call.Env.Config
	n, err := call.Env.Store.ActiveChildren(ctx, call.Caller.Key)
	if err != nil {
		return err
	}
	if limit := cfg.Agents.Defaults.Subagents.MaxChildrenPerAgent; n >= limit {
		return tooManyChildren(call.Caller.Key, n, limit)
	}
	if d := call.Env.Policy.SpawnAgent(call.Caller, agentID); !d.Allowed() {
		return &policy.Denied{Decision: d}
	}
	if _, err := call.Env.Runtime.ResolveThinking(thinking, agentID); err != nil {
		return fmt.Errorf("invalid thinking: %v", err)
	}
	return call.Approve(ctx, summary)
}

// tooManyChildren is the refusal of a spawn over max_children_per_agent
// (checked first by spawnGuards, then again in the run's own transaction).
func tooManyChildren(key string, n, limit int) error {
	return &policy.Denied{Decision: policy.Decision{Rule: "subagents.max_children_per_agent", Hint: "agents.defaults.subagents.max_children_per_agent",
		Message: fmt.Sprintf("%s already has %d active children (max_children_per_agent = %d): wait for one to finish, kill one, or raise agents.defaults.subagents.max_children_per_agent", key, n, limit)}}
}

// spawnErr turns a limit found in the spawn's transaction into the same
// refusal spawnGuards gives.
func spawnErr(err error) error {
	var le *store.LimitError
	if errors.As(err, &le) {
		return tooManyChildren(le.Requester, le.Active, le.Limit)
	}
	return err
}

func sessionsSpawn(ctx context.Context, call *Call, in SpawnIn) (SpawnOut, string, error) {
	runs, err := runsOf(call)
	if err != nil {
		return SpawnOut{}, "", err
	}
	if strings.TrimSpace(in.Task) == "" {
		return SpawnOut{}, "", errors.New("task is empty: say what the sub-agent should do")
	}
	budget, err := decodeBudget(in.Budget)
	if err != nil {
		return SpawnOut{}, "", err
	}
	timeout := in.RunTimeoutSeconds
	if timeout == 0 {
		timeout = in.TimeoutSeconds
	}
	if timeout == 0 {
		timeout = call.Env.Config.Agents.Defaults.Subagents.RunTimeoutSeconds
	}
	if err := spawnGuards(ctx, call, in.AgentID, in.Thinking, in.ApprovalSummary()); err != nil {
		return SpawnOut{}, "", err
	}
	tk, err := runs.Spawn(ctx, call.Env.Policy, spruntime.ChildSpec{
		Parent: call.Caller, Task: in.Task, Label: in.Label, AgentID: in.AgentID, Model: in.Model, Thinking: in.Thinking,
		Preset: in.Preset, ActiveTools: in.ActiveTools, ToolChoice: in.ToolChoice.choice(), Timeout: time.Duration(timeout) * time.Second,
		ContextMode: in.Context, Budget: budget,
	}, in.Cleanup)
	if err != nil {
		return SpawnOut{}, "", spawnErr(err)
	}
	out := SpawnOut{Status: "accepted", RunID: tk.RunID, ChildSessionKey: tk.ChildKey, ModelApplied: tk.Model, Warnings: tk.Warnings,
		Note: "The sub-agent runs in the background; its result is announced to you when it finishes (also via spawn_status/spawn_result with this runId)."}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	text := fmt.Sprintf("Sub-agent accepted.\nRun: %s\nSession: %s\nModel: %s\n%sTask: %s\n%s", tk.RunID, tk.ChildKey, tk.Model, labelLine(in.Label), firstN(in.Task, 200), out.Note)
	for _, w := range out.Warnings {
		text += "\nWarning: " + w
	}
	return out, text, nil
}

func labelLine(label string) string {
	if label == "" {
		return ""
	}
	return "Label: " + label + "\n"
}

func labelOr(label, task string) string {
	if label != "" {
		return label
	}
	return task
}

// ---- spawn_agent ----

// SpawnAgentIn is the input of spawn_agent.
type SpawnAgentIn struct {
	Task           string    `json:"task,omitempty" jsonschema:"what the sub-agent should do"`
	Context        string    `json:"context,omitempty" jsonschema:"shown to the child as [From: <context>]"`
	Preset         string    `json:"preset,omitempty" jsonschema:"a preset for the child (narrows your policy)"`
	Model          string    `json:"model,omitempty" jsonschema:"model id from [[models]]"`
	AllowTools     []string  `json:"allow_tools,omitempty" jsonschema:"the only tools the child may call"`
	DenyTools      []string  `json:"deny_tools,omitempty" jsonschema:"the child may not call these tools"`
	DelegateOnly   bool      `json:"delegate_only,omitempty" jsonschema:"the child may only spawn/control sub-agents and yield" schema:"default=false"`
	Nonblocking    bool      `json:"nonblocking,omitempty" jsonschema:"return a task_id at once instead of waiting" schema:"default=false"`
	ActiveTools    []string  `json:"active_tools,omitempty" jsonschema:"the only tools the child model is shown"`
	ToolChoice     *ChoiceIn `json:"tool_choice,omitempty" jsonschema:"force tool use on the first model call"`
	OutputSchema   any       `json:"output_schema,omitempty" jsonschema:"JSON Schema the child's result must match"`
	TimeoutSeconds int       `json:"timeoutSeconds,omitempty" jsonschema:"abort after N seconds" schema:"min=0,max=86400"`
	ContextMode    string    `json:"context_mode,omitempty" schema:"enum=none|fork"`
	Tasks          []string  `json:"tasks,omitempty"`
	Budget         any       `json:"budget,omitempty"`
}

// ApprovalSummary is the task, for the approval prompt.
func (in SpawnAgentIn) ApprovalSummary() string { return firstN(in.Task, 300) }

// SpawnAgentOut is the output of spawn_agent.
type SpawnAgentOut struct {
	Status        string   `json:"status" jsonschema:"ok, error, timeout, killed (blocking) or running (nonblocking, or still running when the wait ended)"`
	TaskID        string   `json:"task_id"`
	Text          string   `json:"text,omitempty"`
	Output        any      `json:"output,omitempty" jsonschema:"the child's sessions_yield result"`
	Iterations    int      `json:"iterations"`
	ToolCallsMade int      `json:"tool_calls_made"`
	Model         string   `json:"model"`
	ModelServed   string   `json:"modelServed,omitempty" jsonschema:"the model the provider says answered"`
	Preset        string   `json:"preset"`
	StartedAt     int64    `json:"started_at,omitempty"`
	Note          string   `json:"note,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
	// Tasks are the children of a tasks[] call, in its order.
	Tasks []BatchItem `json:"tasks,omitempty"`
}

// maxBlockingWait bounds a blocking spawn_agent; past it the call returns
// the task_id with status running and the child goes on.
const maxBlockingWait = 10 * time.Minute

// delegateTools are what a delegate_only child may call.
var delegateTools = []string{"sessions_spawn", "spawn_agent", "spawn_status", "spawn_result", "spawn_list", "cancel_spawn", "subagents", "sessions_yield"}

func spawnAgent(ctx context.Context, call *Call, in SpawnAgentIn) (SpawnAgentOut, string, error) {
	runs, err := runsOf(call)
	if err != nil {
		return SpawnAgentOut{}, "", err
	}
	if len(in.Tasks) > 0 {
		return spawnAgentBatch(ctx, call, in)
	}
	if strings.TrimSpace(in.Task) == "" {
		return SpawnAgentOut{}, "", errors.New("task is empty: say what the sub-agent should do (or give tasks)")
	}
	budget, err := decodeBudget(in.Budget)
	if err != nil {
		return SpawnAgentOut{}, "", err
	}
	if err := spawnGuards(ctx, call, "", "", in.ApprovalSummary()); err != nil {
		return SpawnAgentOut{}, "", err
	}
	allow := in.AllowTools
	if in.DelegateOnly {
		allow = delegateTools
		if len(in.AllowTools) > 0 {
			return SpawnAgentOut{}, "", errors.New("delegate_only and allow_tools cannot be combined: delegate_only already sets the allowed tools")
		}
	}
	timeout := in.TimeoutSeconds
	if timeout == 0 {
		timeout = call.Env.Config.Agents.Defaults.Subagents.RunTimeoutSeconds
	}
	var schema json.RawMessage
	if in.OutputSchema != nil {
		if _, ok := in.OutputSchema.(map[string]any); !ok {
			return SpawnAgentOut{}, "", errors.New("output_schema must be a JSON Schema object, e.g. {\"type\":\"object\",\"properties\":{...}}")
		}
		schema, _ = json.Marshal(in.OutputSchema)
	}
	tk, err := runs.Spawn(ctx, call.Env.Policy, spruntime.ChildSpec{
		Parent: call.Caller, Task: in.Task, Context: in.Context, Model: in.Model, Preset: in.Preset, ActiveTools: in.ActiveTools,
		ToolChoice: in.ToolChoice.choice(), AllowTools: allow, DenyTools: in.DenyTools, OutputSchema: schema,
		Timeout: time.Duration(timeout) * time.Second, ContextMode: in.ContextMode, Budget: budget,
	}, "keep")
	if err != nil {
		return SpawnAgentOut{}, "", spawnErr(err)
	}
	out := SpawnAgentOut{TaskID: tk.RunID, Model: tk.Model, Preset: tk.Preset, StartedAt: tk.CreatedAt, Warnings: tk.Warnings}
	if in.Nonblocking {
		out.Status = "running"
		out.Note = "Use spawn_status or spawn_result with this task_id; the result is also announced to you."
		return out, fmt.Sprintf("Sub-agent started: task_id %s (model %s). %s", tk.RunID, tk.Model, out.Note) + warningLines(out.Warnings), nil
	}
	// Blocking: progress while the child works; MCP cancellation kills it.
	if call.Progress != nil {
		stop := runs.WatchProgress(tk.RunID, func(step int, note string) { call.Progress(float64(step), 0, note) })
		defer stop()
	}
	wait := maxBlockingWait
	if tk.Timeout > 0 && tk.Timeout+5*time.Second < wait {
		wait = tk.Timeout + 5*time.Second
	}
	run, err := runs.Wait(ctx, tk.RunID, wait)
	if ctx.Err() != nil {
		_, _ = runs.Kill(context.WithoutCancel(ctx), tk.RunID, "the spawn_agent call was cancelled by the client", true)
		run, _ = call.Env.Store.GetRun(context.WithoutCancel(ctx), tk.RunID)
	}
	if err != nil && run == nil {
		return SpawnAgentOut{}, "", err
	}
	if store.Terminal(run.State) {
		// The result is returned here, so its announce is not delivered again.
		_ = call.Env.Store.MarkAnnounceDelivered(context.WithoutCancel(ctx), run.ID)
	}
	fillRunOut(&out, run)
	out.ModelServed = run.ModelServed
	if w := call.Env.Runtime.ModelServedWarning(run.Model, run.ModelServed); w != "" {
		out.Warnings = append(out.Warnings, w)
	}
	text := renderSpawnAgent(out)
	if store.Terminal(run.State) {
		text += "\n" + spruntime.StatsLine(run, tk.SessionID)
	}
	return out, text + warningLines(out.Warnings), nil
}

func warningLines(ws []string) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString("\nWarning: " + w)
	}
	return b.String()
}

// Failed marks a blocking spawn_agent whose child failed as an error result.
func (o SpawnAgentOut) Failed() bool { return o.Status == store.RunError }

func fillRunOut(out *SpawnAgentOut, run *store.Run) {
	out.Status = run.State
	if !store.Terminal(run.State) {
		out.Status = "running"
		out.Note = "Still running; use spawn_result with this task_id to wait for it."
		return
	}
	out.Text, out.Iterations, out.ToolCallsMade = run.ResultText, run.Iterations, run.ToolCalls
	if len(run.ResultJSON) > 0 {
		out.Output = run.ResultJSON
	}
	if run.Note != "" {
		out.Note = run.Note
	}
}

func renderSpawnAgent(out SpawnAgentOut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sub-agent %s: %s (model %s, %d iterations, %d tool calls)\n", out.TaskID, out.Status, out.Model, out.Iterations, out.ToolCallsMade)
	if out.Note != "" {
		fmt.Fprintf(&b, "Note: %s\n", out.Note)
	}
	result := out.Text
	if raw, ok := out.Output.(json.RawMessage); ok && string(raw) != out.Text {
		result = strings.TrimSpace(result + "\n" + string(raw))
	}
	if result != "" {
		b.WriteString(Fence("sub-agent "+out.TaskID, result))
	}
	return strings.TrimSpace(b.String())
}

// ---- spawn_status / spawn_result / spawn_list / cancel_spawn ----

// TaskIn names a run.
type TaskIn struct {
	TaskID string `json:"task_id" jsonschema:"runId from a spawn"`
}

// ResultIn is the input of spawn_result.
type ResultIn struct {
	TaskID      string `json:"task_id" jsonschema:"runId from a spawn"`
	WaitSeconds int    `json:"wait_seconds,omitempty" jsonschema:"wait up to N seconds for the run to end" schema:"default=0,min=0,max=600"`
}

// RunInfo is a run as the spawn_* tools show it.
type RunInfo struct {
	TaskID        string  `json:"task_id"`
	Status        string  `json:"status" jsonschema:"queued, running, ok, error, timeout, killed, budget or unknown"`
	Label         string  `json:"label"`
	Task          string  `json:"task"`
	ChildKey      string  `json:"childSessionKey"`
	AgentID       string  `json:"agentId"`
	Model         string  `json:"model"`
	ModelServed   string  `json:"modelServed,omitempty" jsonschema:"the model the provider says answered"`
	ModelWarning  string  `json:"modelWarning,omitempty" jsonschema:"set when modelServed differs from model"`
	Preset        string  `json:"preset"`
	Requester     string  `json:"requester"`
	Note          string  `json:"note,omitempty"`
	Text          string  `json:"text,omitempty"`
	Output        any     `json:"output,omitempty" jsonschema:"the child's sessions_yield result"`
	Iterations    int     `json:"iterations"`
	ToolCallsMade int     `json:"tool_calls_made"`
	Tokens        Tokens  `json:"tokens"`
	CostUSD       float64 `json:"estimatedCostUsd"`
	CreatedAt     int64   `json:"created_at"`
	StartedAt     int64   `json:"started_at,omitempty"`
	EndedAt       int64   `json:"ended_at,omitempty"`
	Announce      string  `json:"announce,omitempty" jsonschema:"the run's announce, once it ended"`
	// Seed 000's task API names (its clients read them).
	FinishedAt  int64   `json:"finished_at,omitempty" jsonschema:"ended_at, for seed 000 clients"`
	ElapsedSecs float64 `json:"elapsed_secs" jsonschema:"seconds from start to end (or to now while it runs)"`
	Error       string  `json:"error,omitempty" jsonschema:"why it failed (status error, timeout or unknown)"`
	Cancelled   bool    `json:"cancelled,omitempty" jsonschema:"status killed: cancelled (cancel_spawn, subagents kill)"`
	// Budget lists the spending limits in force, with spent and left.
	Budget []spruntime.BudgetLine `json:"budget,omitempty"`
}

func runInfo(ctx context.Context, call *Call, r *store.Run, withAnnounce bool) RunInfo {
	info := RunInfo{TaskID: r.ID, Status: r.State, Label: r.Label, Task: r.Task, ChildKey: r.ChildKey, AgentID: r.AgentID, Model: r.Model,
		Preset: r.Preset, Requester: r.RequesterKey, Note: r.Note, Text: r.ResultText, Iterations: r.Iterations,
		ToolCallsMade: r.ToolCalls, Tokens: Tokens{In: r.TokensIn, Out: r.TokensOut, Total: r.TokensIn + r.TokensOut}, CostUSD: r.CostUSD,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, EndedAt: r.EndedAt}
	if len(r.ResultJSON) > 0 {
		info.Output = r.ResultJSON
	}
	info.ModelServed = r.ModelServed
	info.Budget = runBudget(ctx, call, r)
	if call.Env.Runtime != nil {
		info.ModelWarning = call.Env.Runtime.ModelServedWarning(r.Model, r.ModelServed)
	}
	info.FinishedAt = r.EndedAt
	if r.StartedAt > 0 {
		end := r.EndedAt
		if end == 0 {
			end = time.Now().UnixMilli()
		}
		info.ElapsedSecs = float64(end-r.StartedAt) / 1000
	}
	switch r.State {
	case store.RunError, store.RunTimeout, store.RunUnknown:
		info.Error = r.Note
		if info.Error == "" {
			info.Error = r.State
		}
	case store.RunKilled:
		info.Cancelled = true
	}
	if withAnnounce && store.Terminal(r.State) {
		if a, err := call.Env.Store.GetAnnounce(ctx, r.ID); err == nil {
			info.Announce = a.Body
		}
	}
	return info
}

// ownRun loads a run the caller may see: one it spawned, or one spawned by
// a session it spawned (transitively).
func ownRun(ctx context.Context, call *Call, id string) (*store.Run, error) {
	r, err := call.Env.Store.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no run %q (spawn_list shows your runs)", id)
	}
	if err != nil {
		return nil, err
	}
	owned := r.RequesterKey == call.Caller.Key
	if !owned {
		in, err := call.Env.Store.IsDescendant(ctx, call.Caller.Key, r.RequesterKey)
		owned = err == nil && in
	}
	if owned {
		// Owning the run is not enough: its child session is checked like
		// any session the caller names (key_prefix, allowed_keys, ...).
		if err := policy.Check(call.Env.Policy.Access(ctx, call.Caller, r.ChildKey)); err != nil {
			return nil, err
		}
		return r, nil
	}
	return nil, &policy.Denied{Decision: policy.Decision{Rule: "spawn.owner", Message: "spawn task access denied: run " + id + " was not spawned by " + call.Caller.Key + " or one of its sub-agents"}}
}

func renderRun(i RunInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s: %s\n%sTask: %s\nSession: %s (agent %s, model %s)\n", i.TaskID, i.Status, labelLine(i.Label), firstN(i.Task, 200), i.ChildKey, i.AgentID, i.Model)
	if i.ModelWarning != "" {
		fmt.Fprintf(&b, "Warning: %s\n", i.ModelWarning)
	}
	if line := renderBudget(i.Budget); line != "" {
		b.WriteString(line + "\n")
	}
	if i.Note != "" && i.Announce == "" { // the announce carries the note
		fmt.Fprintf(&b, "Note: %s\n", i.Note)
	}
	if i.Announce != "" {
		b.WriteString(i.Announce)
	} else if i.Text != "" {
		b.WriteString(Fence("session://"+i.ChildKey, i.Text))
	}
	return strings.TrimSpace(b.String())
}

func spawnStatus(ctx context.Context, call *Call, in TaskIn) (RunInfo, string, error) {
	r, err := ownRun(ctx, call, in.TaskID)
	if err != nil {
		return RunInfo{}, "", err
	}
	info := runInfo(ctx, call, r, true)
	shownAnnounce(ctx, call, info)
	return info, renderRun(info), nil
}

// shownAnnounce marks an announce this result shows as delivered, so it is
// not put in front of the next tool result as well.
func shownAnnounce(ctx context.Context, call *Call, info RunInfo) {
	if info.Announce != "" {
		_ = call.Env.Store.MarkAnnounceDelivered(context.WithoutCancel(ctx), info.TaskID)
	}
}

// Failed marks a run that ended in error as an error result.
func (i RunInfo) Failed() bool { return i.Status == store.RunError }

func spawnResult(ctx context.Context, call *Call, in ResultIn) (RunInfo, string, error) {
	r, err := ownRun(ctx, call, in.TaskID)
	if err != nil {
		return RunInfo{}, "", err
	}
	if in.WaitSeconds > 0 && !store.Terminal(r.State) {
		runs, err := runsOf(call)
		if err != nil {
			return RunInfo{}, "", err
		}
		if r, err = runs.Wait(ctx, r.ID, time.Duration(in.WaitSeconds)*time.Second); err != nil {
			return RunInfo{}, "", err
		}
	}
	info := runInfo(ctx, call, r, true)
	shownAnnounce(ctx, call, info)
	text := renderRun(info)
	if !store.Terminal(r.State) {
		text += "\nStill " + r.State + "; call spawn_result again (wait_seconds up to 600) or wait for the announce."
	}
	return info, text, nil
}

// ListRunsIn is the input of spawn_list.
type ListRunsIn struct {
	Status string `json:"status,omitempty" jsonschema:"only runs in this state (cancelled = killed)" schema:"enum=queued|running|ok|error|timeout|killed|cancelled|budget|unknown"`
}

// ListRunsOut is the output of spawn_list.
type ListRunsOut struct {
	Count int       `json:"count"`
	Runs  []RunInfo `json:"runs"`
}

func spawnList(ctx context.Context, call *Call, in ListRunsIn) (ListRunsOut, string, error) {
	f := store.RunFilter{Requesters: []string{call.Caller.Key}, Limit: 200}
	if in.Status == "cancelled" { // seed 000's name for a killed run
		in.Status = store.RunKilled
	}
	if in.Status != "" {
		f.States = []string{in.Status}
	}
	runs, err := call.Env.Store.ListRuns(ctx, f)
	if err != nil {
		return ListRunsOut{}, "", err
	}
	if runs, err = visibleRuns(ctx, call, runs); err != nil {
		return ListRunsOut{}, "", err
	}
	out := ListRunsOut{Runs: []RunInfo{}}
	var b strings.Builder
	for _, r := range runs {
		i := runInfo(ctx, call, r, false)
		out.Runs = append(out.Runs, i)
		fmt.Fprintf(&b, "- %s %s · %s · %s\n", i.TaskID, i.Status, firstN(labelOr(i.Label, i.Task), 60), i.ChildKey)
	}
	out.Count = len(out.Runs)
	return out, fmt.Sprintf("%d run(s):\n%s", out.Count, b.String()), nil
}

// CancelOut is the output of cancel_spawn.
type CancelOut struct {
	TaskID    string   `json:"task_id"`
	Cancelled bool     `json:"cancelled" jsonschema:"this call stopped the run (false: it had already ended)"`
	Status    string   `json:"status" jsonschema:"the run state: killed once cancelled (seed 000's cancelled)"`
	Killed    []string `json:"killed" jsonschema:"runs stopped: this one and its descendants"`
}

func cancelSpawn(ctx context.Context, call *Call, in TaskIn) (CancelOut, string, error) {
	r, err := ownRun(ctx, call, in.TaskID)
	if err != nil {
		return CancelOut{}, "", err
	}
	runs, err := runsOf(call)
	if err != nil {
		return CancelOut{}, "", err
	}
	killed, err := runs.Kill(ctx, r.ID, "cancelled by "+call.Caller.Key, true)
	if err != nil {
		return CancelOut{}, "", err
	}
	r, _ = call.Env.Store.GetRun(ctx, r.ID)
	out := CancelOut{TaskID: r.ID, Status: r.State, Killed: killed, Cancelled: len(killed) > 0}
	if out.Killed == nil {
		out.Killed = []string{}
	}
	if len(killed) == 0 {
		return out, fmt.Sprintf("Run %s had already ended (%s); nothing to cancel.", r.ID, r.State), nil
	}
	return out, fmt.Sprintf("Cancelled run %s (and %d descendant run(s)); it is now %s.", r.ID, len(killed)-1, r.State), nil
}

// SpawnTools are the spawn tools: sessions_spawn, spawn_agent and the
// spawn_* task tools over the run registry.
func SpawnTools() []*Tool {
	spawnAnn := Annotations{ReadOnly: false, Destructive: false, Idempotent: false, OpenWorld: true}
	readAnn := Annotations{ReadOnly: true, Idempotent: true}
	return []*Tool{
		Define(Meta{Name: "sessions_spawn", Title: "Spawn a sub-agent", Class: policy.ClassSpawn, Annotations: spawnAnn, DeferApproval: true,
			Description: "Start a sub-agent on a task in its own session, in the background. Returns at once with a runId; the result is announced to you (before your next tool result, and via spawn_result)."},
			sessionsSpawn),
		Define(Meta{Name: "spawn_agent", Title: "Run a sub-agent", Class: policy.ClassSpawn, Annotations: spawnAnn, DeferApproval: true,
			Description: "Run a sub-agent on a task and wait for its result, or with nonblocking: true get a task_id at once. Cancelling the call stops the child."},
			spawnAgent),
		Define(Meta{Name: "spawn_status", Title: "Sub-agent run status", Class: policy.ClassRead, Annotations: readAnn,
			Description: "State of a run you spawned, with its announce once it ended."},
			spawnStatus),
		Define(Meta{Name: "spawn_result", Title: "Sub-agent run result", Class: policy.ClassRead, Annotations: readAnn,
			Description: "The result of a run you spawned; on wait_seconds expiry the current state is returned and the run goes on."},
			spawnResult),
		Define(Meta{Name: "spawn_list", Title: "List sub-agent runs", Class: policy.ClassRead, Annotations: readAnn,
			Description: "The runs you spawned, newest first (to recover task ids after losing context)."},
			spawnList),
		Define(Meta{Name: "cancel_spawn", Title: "Cancel a sub-agent run", Class: policy.ClassSpawn, Annotations: Annotations{Destructive: true, Idempotent: true},
			Description: "Stop a run you spawned and every run it spawned. A cancel is final."},
			cancelSpawn),
	}
}

// RunResource is a run as the run:// resource shows it, with its announce
// once it ended. Like spawn_status, only the session that spawned the run
// (or one of its ancestors) may read it.
func RunResource(ctx context.Context, env *Env, c policy.Caller, id string) (RunInfo, error) {
	call := &Call{Caller: c, Env: env}
	r, err := ownRun(ctx, call, id)
	if err != nil {
		return RunInfo{}, err
	}
	return runInfo(ctx, call, r, true), nil
}
