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
//
// max_children_per_agent is a limit, so it is counted in the run's own
// transaction (CreateRun), where concurrent spawns cannot pass it
// together. It is read here too only where the order of refusals needs
// it before the spawn's transaction: when another guard refuses (the
// limit is reported first) and before a human is asked to approve (no
// one approves a spawn that the limit refuses). A spawn that needs
// neither — nearly all — is counted once, in its transaction, and a
// refusal found after these guards goes through limitFirst.
func spawnGuards(ctx context.Context, call *Call, agentID, thinking, summary string) error {
	var refused error
	if d := call.Env.Policy.SpawnAgent(call.Caller, agentID); !d.Allowed() {
		refused = &policy.Denied{Decision: d}
	} else if _, err := call.Env.Runtime.ResolveThinking(thinking, agentID); err != nil {
		refused = fmt.Errorf("invalid thinking: %v", err)
	}
	if refused != nil || call.pending != nil {
		if err := childLimit(ctx, call); err != nil {
			return err
		}
	}
	if refused != nil {
		return refused
	}
	return call.Approve(ctx, summary)
}

// childLimit refuses a spawn when the caller already has
// max_children_per_agent queued or running children.
func childLimit(ctx context.Context, call *Call) error {
	n, err := call.Env.Store.ActiveChildren(ctx, call.Caller.Key)
	if err != nil {
		return err
	}
	if limit := call.Env.Config.Agents.Defaults.Subagents.MaxChildrenPerAgent; n >= limit {
		return tooManyChildren(call.Caller.Key, n, limit)
	}
	return nil
}

// limitFirst returns the refusal a spawn over max_children_per_agent gets
// in place of err, a refusal found after spawnGuards (which did not count
// the children when nothing needed it): the limit comes first whichever
// check failed. Otherwise it returns err.
func limitFirst(ctx context.Context, call *Call, err error) error {
	var le *store.LimitError
	if err == nil || errors.As(err, &le) {
		return err
	}
	if lerr := childLimit(ctx, call); lerr != nil {
		var denied *policy.Denied
		if errors.As(lerr, &denied) {
			return lerr
		}
	}
	return err
}

// tooManyChildren is the refusal of a spawn over max_children_per_agent
// (found by spawnGuards or limitFirst, or in the run's own transaction).
func tooManyChildren(key string, n, limit int) error {
	return &policy.Denied{Decision: policy.Decision{Rule: "subagents.max_children_per_agent", Hint: "agents.defaults.subagents.max_children_per_agent",
		Message: fmt.Sprintf("%s already has %d active children (max_children_per_agent = %d): wait for one to finish, kill one, or raise agents.defaults.subagents.max_children_per_agent", key, n, limit)}}
}

// spawnErr turns a limit found in the spawn's transaction into the same
// refusal spawnGuards gives; any other refusal is preceded by the limit
// (limitFirst).
func spawnErr(ctx context.Context, call *Call, err error) error {
	var le *store.LimitError
	if errors.As(err, &le) {
		return tooManyChildren(le.Requester, le.Active, le.Limit)
	}
	return limitFirst(ctx, call, err)
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
	// The result depends on the ticket alone, so the call's own transcript
	// record can be written with the run (ChildSpec.Record).
	render := func(tk *spruntime.Ticket) (SpawnOut, string) {
		out := SpawnOut{Status: "accepted", RunID: tk.RunID, ChildSessionKey: tk.ChildKey, ModelApplied: tk.Model, Warnings: tk.Warnings,
			Note: "The sub-agent runs in the background; its result is announced to you when it finishes (also via spawn_status/spawn_result with this runId)."}
		if out.Warnings == nil {
			out.Warnings = []string{}
		}
		text := fmt.Sprintf("Sub-agent accepted.\nRun: %s\nSession: %s\nModel: %s\n%sTask: %s\n%s", tk.RunID, tk.ChildKey, tk.Model, labelLine(in.Label), firstN(in.Task, 200), out.Note)
		for _, w := range out.Warnings {
			text += "\nWarning: " + w
		}
		return out, text
	}
	tk, err := runs.Spawn(ctx, call.Env.Policy, spruntime.ChildSpec{
		Parent: call.Caller, Task: in.Task, Label: in.Label, AgentID: in.AgentID, Model: in.Model, Thinking: in.Thinking,
		Preset: in.Preset, ActiveTools: in.ActiveTools, ToolChoice: in.ToolChoice.choice(), Timeout: time.Duration(timeout) * time.Second,
		ContextMode: in.Context, Budget: budget,
		Record: func(tk *spruntime.Ticket) *store.CallRecord {
			out, text := render(tk)
			return call.record(ctx, out, text)
		},
	}, in.Cleanup)
	if err != nil {
		return SpawnOut{}, "", spawnErr(ctx, call, err)
	}
	out, text := render(tk)
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
			return SpawnAgentOut{}, "", limitFirst(ctx, call, errors.New("delegate_only and allow_tools cannot be combined: delegate_only already sets the allowed tools"))
		}
	}
	timeout := in.TimeoutSeconds
	if timeout == 0 {
		timeout = call.Env.Config.Agents.Defaults.Subagents.RunTimeoutSeconds
	}
	var schema json.RawMessage
	if in.OutputSchema != nil {
		if _, ok := in.OutputSchema.(map[string]any); !ok {
			return SpawnAgentOut{}, "", limitFirst(ctx, call, errors.New("output_schema must be a JSON Schema object, e.g. {\"type\":\"object\",\"properties\":{...}}"))
		}
		schema, _ = json.Marshal(in.OutputSchema)
	}
	tk, err := runs.Spawn(ctx, call.Env.Policy, spruntime.ChildSpec{
		Parent: call.Caller, Task: in.Task, Context: in.Context, Model: in.Model, Preset: in.Preset, ActiveTools: in.ActiveTools,
		ToolChoice: in.ToolChoice.choice(), AllowTools: allow, DenyTools: in.DenyTools, OutputSchema: schema,
		Timeout: time.Duration(timeout) * time.Second, ContextMode: in.ContextMode, Budget: budget,
	}, "keep")
	if err != nil {
		return SpawnAgentOut{}, "", spawnErr(ctx, call, err)
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
