package tools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
	"github.com/sessionplane/sessionplane/runtime/store"
)

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
