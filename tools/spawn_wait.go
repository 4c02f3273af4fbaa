package tools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Fan-in limits.
const (
	maxWaitIDs        = 256 // spawn_wait task_ids
	maxBatchTasks     = 64  // spawn_agent tasks
	defaultFanInWait  = 60  // spawn_wait wait_seconds when omitted
	fanInTextInReport = 2000
)

// WaitIn is the input of spawn_wait.
type WaitIn struct {
	TaskIDs     []string `json:"task_ids" jsonschema:"runs you spawned" schema:"minItems=1,maxItems=256"`
	Mode        string   `json:"mode,omitempty" jsonschema:"all (default): until every run ends; any: until one does" schema:"enum=all|any,default=all"`
	WaitSeconds *int     `json:"wait_seconds,omitempty" jsonschema:"wait at most N seconds (default 60)" schema:"min=0,max=600"`
}

// RunBrief is a run that had not ended when a wait returned.
type RunBrief struct {
	TaskID string `json:"task_id"`
	Status string `json:"status"`
	Label  string `json:"label"`
}

// WaitOut is the output of spawn_wait.
type WaitOut struct {
	Mode     string     `json:"mode"`
	Done     bool       `json:"done" jsonschema:"every run (mode all) or one (mode any) ended"`
	Finished []RunInfo  `json:"finished"`
	Running  []RunBrief `json:"running"`
}

func spawnWait(ctx context.Context, call *Call, in WaitIn) (WaitOut, string, error) {
	runs, err := runsOf(call)
	if err != nil {
		return WaitOut{}, "", err
	}
	ids := make([]string, 0, len(in.TaskIDs))
	seen := map[string]bool{}
	for _, id := range in.TaskIDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, err := ownRun(ctx, call, id); err != nil {
			return WaitOut{}, "", err
		}
		ids = append(ids, id)
	}
	wait := defaultFanInWait
	if in.WaitSeconds != nil {
		wait = *in.WaitSeconds
	}
	mode := in.Mode
	if mode == "" {
		mode = "all"
	}
	got, err := runs.WaitRuns(ctx, ids, mode == "any", time.Duration(wait)*time.Second, fanInProgress(call))
	if err != nil {
		return WaitOut{}, "", err
	}
	out := WaitOut{Mode: mode, Finished: []RunInfo{}, Running: []RunBrief{}}
	for _, r := range got {
		if !store.Terminal(r.State) {
			out.Running = append(out.Running, RunBrief{TaskID: r.ID, Status: r.State, Label: firstN(labelOr(r.Label, r.Task), 60)})
			continue
		}
		out.Finished = append(out.Finished, runInfo(ctx, call, r, false))
		// The result is returned here, so its announce is not delivered again.
		_ = call.Env.Store.MarkAnnounceDelivered(context.WithoutCancel(ctx), r.ID)
	}
	out.Done = len(out.Running) == 0 || mode == "any" && len(out.Finished) > 0
	return out, renderWait(out), nil
}

func fanInProgress(call *Call) func(ended, total int) {
	if call.Progress == nil {
		return nil
	}
	return func(ended, total int) {
		call.Progress(float64(ended), float64(total), fmt.Sprintf("%d of %d runs ended", ended, total))
	}
}

func renderWait(out WaitOut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d ended, %d still running (mode %s).\n", len(out.Finished), len(out.Running), out.Mode)
	for _, i := range out.Finished {
		fmt.Fprintf(&b, "- %s %s · %s\n", i.TaskID, i.Status, firstN(labelOr(i.Label, i.Task), 60))
		if i.Note != "" {
			fmt.Fprintf(&b, "  Note: %s\n", i.Note)
		}
		if i.Text != "" {
			b.WriteString(Fence("sub-agent "+i.TaskID, firstN(i.Text, fanInTextInReport)) + "\n")
		}
	}
	for _, r := range out.Running {
		fmt.Fprintf(&b, "- %s %s · %s\n", r.TaskID, r.Status, r.Label)
	}
	if len(out.Running) > 0 {
		b.WriteString("Call spawn_wait again with the running task_ids, or wait for their announces.")
	}
	return strings.TrimSpace(b.String())
}

// ---- spawn_agent tasks[] ----

// BatchItem is one task of a spawn_agent tasks[] call.
type BatchItem struct {
	TaskID        string `json:"task_id"`
	Status        string `json:"status"`
	Task          string `json:"task"`
	Text          string `json:"text,omitempty"`
	Output        any    `json:"output,omitempty"`
	Model         string `json:"model"`
	ModelServed   string `json:"modelServed,omitempty"`
	Iterations    int    `json:"iterations"`
	ToolCallsMade int    `json:"tool_calls_made"`
	Note          string `json:"note,omitempty"`
}

// spawnAgentBatch starts one child per task, each through spawn_agent's
// own path (the same guards, nonblocking), with one approval for the
// batch; then, unless nonblocking, waits for all to end (for the first:
// nonblocking, then spawn_wait with mode any).
// A task that cannot start stops the batch and kills those started;
// cancelling the call kills every child it started that is still running.
func spawnAgentBatch(ctx context.Context, call *Call, in SpawnAgentIn) (SpawnAgentOut, string, error) {
	runs, err := runsOf(call)
	if err != nil {
		return SpawnAgentOut{}, "", err
	}
	if strings.TrimSpace(in.Task) != "" {
		return SpawnAgentOut{}, "", errors.New("give task or tasks, not both")
	}
	if len(in.Tasks) > maxBatchTasks {
		return SpawnAgentOut{}, "", fmt.Errorf("tasks: %d tasks, at most %d per call", len(in.Tasks), maxBatchTasks)
	}
	for i, t := range in.Tasks {
		if strings.TrimSpace(t) == "" {
			return SpawnAgentOut{}, "", fmt.Errorf("tasks[%d] is empty: say what that sub-agent should do", i)
		}
	}
	// The whole batch must fit max_children_per_agent, so none is started
	// in vain.
	limit := call.Env.Config.Agents.Defaults.Subagents.MaxChildrenPerAgent
	if n, err := call.Env.Store.ActiveChildren(ctx, call.Caller.Key); err != nil {
		return SpawnAgentOut{}, "", err
	} else if n+len(in.Tasks) > limit {
		return SpawnAgentOut{}, "", &policy.Denied{Decision: policy.Decision{Rule: "subagents.max_children_per_agent", Hint: "agents.defaults.subagents.max_children_per_agent",
			Message: fmt.Sprintf("%d tasks with %d children already active exceed max_children_per_agent = %d: send fewer tasks, wait for children to finish, or raise agents.defaults.subagents.max_children_per_agent", len(in.Tasks), n, limit)}}
	}
	var summary strings.Builder
	fmt.Fprintf(&summary, "%d tasks:", len(in.Tasks))
	for _, t := range in.Tasks {
		summary.WriteString("\n- " + firstN(t, 100))
	}
	if err := call.Approve(ctx, firstN(summary.String(), 600)); err != nil {
		return SpawnAgentOut{}, "", err
	}
	one := in
	one.Tasks, one.Nonblocking = nil, true
	ids := make([]string, 0, len(in.Tasks))
	var warnings []string
	for i, t := range in.Tasks {
		one.Task = t
		o, _, err := spawnAgent(ctx, call, one)
		if err != nil {
			if len(ids) > 0 {
				killAll(ctx, call, ids, fmt.Sprintf("tasks[%d] of the same spawn_agent call could not start", i))
			}
			return SpawnAgentOut{}, "", fmt.Errorf("tasks[%d]: %w (the %d task(s) started before it were cancelled)", i, err, len(ids))
		}
		ids = append(ids, o.TaskID)
		warnings = append(warnings, o.Warnings...)
	}
	out := SpawnAgentOut{Status: "running", Warnings: warnings}
	if !in.Nonblocking {
		wait := maxBlockingWait
		if in.TimeoutSeconds > 0 && time.Duration(in.TimeoutSeconds+5)*time.Second < wait {
			wait = time.Duration(in.TimeoutSeconds+5) * time.Second
		}
		_, err := runs.WaitRuns(ctx, ids, false, wait, fanInProgress(call))
		if ctx.Err() != nil {
			killAll(ctx, call, ids, "the spawn_agent call was cancelled by the client")
		} else if err != nil {
			return SpawnAgentOut{}, "", err
		}
	}
	got, err := call.Env.Store.GetRuns(context.WithoutCancel(ctx), ids)
	if err != nil {
		return SpawnAgentOut{}, "", err
	}
	out.Status = "ok"
	for _, r := range got {
		item := BatchItem{TaskID: r.ID, Status: r.State, Task: firstN(r.Task, 120), Model: r.Model, ModelServed: r.ModelServed, Note: r.Note}
		if store.Terminal(r.State) {
			item.Text, item.Iterations, item.ToolCallsMade = r.ResultText, r.Iterations, r.ToolCalls
			if len(r.ResultJSON) > 0 {
				item.Output = r.ResultJSON
			}
			if !in.Nonblocking {
				_ = call.Env.Store.MarkAnnounceDelivered(context.WithoutCancel(ctx), r.ID)
			}
		}
		switch {
		case !store.Terminal(r.State):
			item.Status = "running"
			out.Status = "running"
		case r.State != store.RunOK && out.Status == "ok":
			out.Status = r.State
		}
		out.Tasks = append(out.Tasks, item)
		out.Iterations += item.Iterations
		out.ToolCallsMade += item.ToolCallsMade
		out.Model = r.Model
	}
	if out.Status == "running" {
		out.Note = "Some tasks are still running: spawn_wait with their task_ids, or wait for their announces."
	}
	return out, renderBatch(out), nil
}

func killAll(ctx context.Context, call *Call, ids []string, note string) {
	if call.Env.Runs == nil {
		return
	}
	for _, id := range ids {
		_, _ = call.Env.Runs.Kill(context.WithoutCancel(ctx), id, note, true)
	}
}

func renderBatch(out SpawnAgentOut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d sub-agents: %s\n", len(out.Tasks), out.Status)
	for _, w := range out.Warnings {
		fmt.Fprintf(&b, "Warning: %s\n", w)
	}
	for _, i := range out.Tasks {
		fmt.Fprintf(&b, "- %s %s · %s\n", i.TaskID, i.Status, firstN(i.Task, 60))
		if i.Note != "" {
			fmt.Fprintf(&b, "  Note: %s\n", i.Note)
		}
		if i.Text != "" {
			b.WriteString(Fence("sub-agent "+i.TaskID, firstN(i.Text, fanInTextInReport)) + "\n")
		}
	}
	if out.Note != "" {
		b.WriteString(out.Note)
	}
	return strings.TrimSpace(b.String())
}

// SpawnWaitTool is spawn_wait.
func SpawnWaitTool() *Tool {
	return Define(Meta{Name: "spawn_wait", Title: "Wait for sub-agent runs", Class: policy.ClassRead, Annotations: readOnly,
		Description: "Wait for several runs you spawned: mode all (default) or any, wait_seconds ≤ 600 (default 60). Returns the finished runs' results and the ones still running."},
		spawnWait)
}
