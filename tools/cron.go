package tools

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/cron"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Cron jobs are visible to the session that added them and to no other:
// list shows the caller's jobs, and remove, run and status refuse a job
// another session added (rule cron.owner). A job's turns run in session
// cron:<jobId> under the payload's agent (default: the creator's) and are
// announced to the creator.

// CronPayloadIn is a job's payload: one agent turn.
type CronPayloadIn struct {
	Kind        string    `json:"kind" jsonschema:"agentTurn" schema:"enum=agentTurn"`
	Message     string    `json:"message" jsonschema:"what the agent is asked on each run"`
	AgentID     string    `json:"agentId,omitempty" jsonschema:"default: yours; another needs allow_agents"`
	Model       string    `json:"model,omitempty" jsonschema:"model id from [[models]]"`
	TimeoutSecs int       `json:"timeout_secs,omitempty" jsonschema:"abort a run after N seconds (0 = configured default)" schema:"min=0,max=86400"`
	ActiveTools []string  `json:"active_tools,omitempty" jsonschema:"the only tools the model is shown"`
	ToolChoice  *ChoiceIn `json:"tool_choice,omitempty" jsonschema:"force tool use on the first model call"`
}

// CronJobIn is a job as cron add takes it.
type CronJobIn struct {
	Name     string        `json:"name" jsonschema:"short name"`
	Schedule string        `json:"schedule" jsonschema:"5-field cron (e.g. \"0 9 * * 1-5\"), every:<Go duration> (e.g. every:15m) or at:<RFC3339> (one shot)"`
	Timezone string        `json:"timezone,omitempty" jsonschema:"IANA zone for cron expressions (default UTC)"`
	Payload  CronPayloadIn `json:"payload"`
}

// CronIn is the input of cron.
type CronIn struct {
	Action string     `json:"action" jsonschema:"add (job), list, remove (id), run (id: fire now), status (id: next/last run)" schema:"enum=add|list|remove|run|status"`
	Job    *CronJobIn `json:"job,omitempty" jsonschema:"add: the job"`
	ID     string     `json:"id,omitempty" jsonschema:"job id (or unique name)"`
}

// ApprovalSummary names the action, for the approval prompt.
func (in CronIn) ApprovalSummary() string {
	if in.Job != nil {
		return fmt.Sprintf("%s %q (%s): %s", in.Action, in.Job.Name, in.Job.Schedule, firstN(in.Job.Payload.Message, 200))
	}
	return strings.TrimSpace(in.Action + " " + in.ID)
}

// CronJobInfo is a job as cron shows it.
type CronJobInfo struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	Schedule     string        `json:"schedule"`
	Timezone     string        `json:"timezone"`
	Enabled      bool          `json:"enabled" jsonschema:"false once an at: job has fired"`
	SessionKey   string        `json:"sessionKey" jsonschema:"the session its turns run in: cron:<id>"`
	Payload      CronPayloadIn `json:"payload"`
	NextRunAt    int64         `json:"nextRunAt" jsonschema:"ms since the epoch; 0 = none"`
	NextRun      string        `json:"nextRun,omitempty" jsonschema:"the next run, RFC3339 in the job's time zone"`
	LastRunAt    int64         `json:"lastRunAt" jsonschema:"ms since the epoch; 0 = never"`
	LastRunID    string        `json:"lastRunId,omitempty" jsonschema:"the last run it started (spawn_status/spawn_result take it)"`
	LastRunState string        `json:"lastRunState,omitempty" jsonschema:"queued, running, ok, error, timeout, killed or unknown"`
	LastNote     string        `json:"lastNote,omitempty" jsonschema:"why the last occurrence started no run (skipped, failed), or a catch-up note"`
	RunCount     int           `json:"runCount"`
	CreatedAt    int64         `json:"createdAt"`
}

// CronOut is the output of cron.
type CronOut struct {
	Action  string        `json:"action"`
	Job     *CronJobInfo  `json:"job,omitempty" jsonschema:"add, remove, run, status: the job"`
	Jobs    []CronJobInfo `json:"jobs,omitzero" jsonschema:"list: your jobs, oldest first"`
	Count   int           `json:"count,omitempty"`
	RunID   string        `json:"runId,omitempty" jsonschema:"run: the run started"`
	Removed bool          `json:"removed,omitempty"`
	Note    string        `json:"note,omitempty"`
}

func choiceOut(c *policy.Choice) *ChoiceIn {
	if c == nil {
		return nil
	}
	return &ChoiceIn{Type: c.Type, Name: c.Name}
}

func cronJobInfo(ctx context.Context, call *Call, j *cron.Job) CronJobInfo {
	p := j.Payload
	info := CronJobInfo{ID: j.ID, Name: j.Name, Schedule: j.Schedule, Timezone: j.Timezone, Enabled: j.Enabled, SessionKey: j.SessionKey(),
		Payload: CronPayloadIn{Kind: p.Kind, Message: p.Message, AgentID: p.AgentID, Model: p.Model, TimeoutSecs: p.TimeoutSecs,
			ActiveTools: p.ActiveTools, ToolChoice: choiceOut(p.ToolChoice)},
		LastRunID: j.LastRunID, LastNote: j.LastNote, RunCount: j.RunCount, CreatedAt: j.CreatedAt.UnixMilli()}
	loc, err := cron.LoadZone(j.Timezone)
	if err != nil {
		loc = time.UTC
	}
	if !j.NextRun.IsZero() {
		info.NextRunAt, info.NextRun = j.NextRun.UnixMilli(), j.NextRun.In(loc).Format(time.RFC3339)
	}
	if !j.LastRun.IsZero() {
		info.LastRunAt = j.LastRun.UnixMilli()
	}
	if j.LastRunID != "" {
		if r, err := call.Env.Store.GetRun(ctx, j.LastRunID); err == nil {
			info.LastRunState = r.State
		}
	}
	return info
}

// cronPayload converts and checks what depends on the configuration: the
// agent (allow_agents for another one) and the model.
func cronPayload(call *Call, in CronPayloadIn) (cron.Payload, error) {
	p := cron.Payload{Kind: in.Kind, Message: in.Message, AgentID: strings.TrimSpace(in.AgentID), Model: strings.TrimSpace(in.Model),
		TimeoutSecs: in.TimeoutSecs, ActiveTools: in.ActiveTools, ToolChoice: in.ToolChoice.choice()}
	cfg := call.Env.Config
	if p.AgentID != "" && p.AgentID != call.Caller.AgentID {
		known := false
		var ids []string
		for _, a := range cfg.Agents.List {
			ids = append(ids, a.ID)
			known = known || a.ID == p.AgentID
		}
		if !known {
			sort.Strings(ids)
			return p, fmt.Errorf("job.payload.agentId: no agent %q in [[agents.list]] (configured: %s)", p.AgentID, orNone(ids))
		}
		if d := call.Env.Policy.SpawnAgent(call.Caller, p.AgentID); !d.Allowed() {
			d.Message = "job.payload.agentId: " + d.Message
			return p, &policy.Denied{Decision: d}
		}
	}
	if p.Model != "" {
		var ids []string
		known := false
		for _, m := range cfg.Models {
			ids = append(ids, m.ID)
			known = known || m.ID == p.Model
		}
		if !known {
			sort.Strings(ids)
			return p, fmt.Errorf("job.payload.model: %q is not in [[models]] (known: %s)", p.Model, orNone(ids))
		}
	}
	if err := p.Validate(); err != nil {
		return p, err
	}
	if c := p.ToolChoice; c != nil && c.Type == "tool" {
		if d := call.Env.Policy.ToolDecision(call.Caller, policy.Canonical(c.Name), ""); !d.Allowed() {
			d.Message = fmt.Sprintf("job.payload.tool_choice: forces %q, which the job's turns may not call (they are bound by your policy): %s", c.Name, d.Message)
			return p, &policy.Denied{Decision: d}
		}
	}
	return p, nil
}

// cronSession creates the job's session cron:<id> at once. Its turns run
// as the payload's agent, bound by that agent's preset and by the
// creator's authority recorded in the job (payload.Authority), so a job
// never does more than the caller that added it could at that moment (deny
// wins, as for a spawned child). The session itself carries no preset: the
// creator's session row may have been created under another policy.
func cronSession(ctx context.Context, call *Call, j *cron.Job) error {
	agent := j.Payload.AgentID
	if agent == "" {
		agent = call.Caller.AgentID
	}
	if agent == "" {
		agent = "main"
	}
	_, err := call.Env.Store.EnsureSession(ctx, store.Session{Key: j.SessionKey(), AgentID: agent, Kind: store.KindCron, Label: j.Name, SpawnedBy: call.Caller.Key})
	return err
}

// ownJob loads a job by id (or by name among the caller's jobs) that the
// caller added.
func ownJob(ctx context.Context, call *Call, sched *cron.Scheduler, action, id string) (*cron.Job, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return nil, fmt.Errorf("id: required for %s: give the job id (cron list shows your jobs)", action)
	}
	j, err := sched.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		mine, lerr := sched.List(ctx, call.Caller.Key)
		if lerr != nil {
			return nil, lerr
		}
		var byName []*cron.Job
		for _, m := range mine {
			if m.Name == id {
				byName = append(byName, m)
			}
		}
		switch len(byName) {
		case 0:
			return nil, fmt.Errorf("id: no cron job %q (cron list shows your jobs)", id)
		case 1:
			return byName[0], nil
		default:
			return nil, fmt.Errorf("id: %d of your jobs are named %q: give the job id", len(byName), id)
		}
	}
	if err != nil && j == nil {
		return nil, err
	}
	if j.CreatorKey != call.Caller.Key {
		return nil, &policy.Denied{Decision: policy.Decision{Rule: "cron.owner",
			Message: fmt.Sprintf("cron job %s was added by another session: jobs are visible only to the session that added them", j.ID)}}
	}
	return j, nil
}

func cronTool(sched *cron.Scheduler) Handler[CronIn, CronOut] {
	return func(ctx context.Context, call *Call, in CronIn) (CronOut, string, error) {
		out := CronOut{Action: in.Action}
		if sched == nil {
			return out, "", errors.New("cron is not available in this server (no scheduler)")
		}
		if in.Action != "add" && in.Job != nil {
			return out, "", fmt.Errorf("job: only add takes a job (%s takes id)", in.Action)
		}
		if (in.Action == "add" || in.Action == "list") && in.ID != "" {
			return out, "", fmt.Errorf("id: not used by %s", in.Action)
		}
		switch in.Action {
		case "list":
			call.NoApproval()
			jobs, err := sched.List(ctx, call.Caller.Key)
			if err != nil {
				return out, "", err
			}
			out.Jobs = []CronJobInfo{}
			for _, j := range jobs {
				out.Jobs = append(out.Jobs, cronJobInfo(ctx, call, j))
			}
			out.Count = len(out.Jobs)
			return out, renderCronList(out.Jobs), nil

		case "status":
			call.NoApproval()
			j, err := ownJob(ctx, call, sched, in.Action, in.ID)
			if err != nil {
				return out, "", err
			}
			info := cronJobInfo(ctx, call, j)
			out.Job = &info
			return out, renderCronJob(info), nil

		case "add":
			if in.Job == nil {
				return out, "", errors.New("job: required for add: {name, schedule, payload: {kind: \"agentTurn\", message}}")
			}
			p, err := cronPayload(call, in.Job.Payload)
			if err != nil {
				return out, "", err
			}
			// Every firing is bounded by the creator's authority now: its
			// layers (presets by name, re-resolved at each firing).
			p.Authority, p.CreatorAgent, p.CreatorVia, p.Bound = call.Caller.Inherit(), call.Caller.AgentID, call.Caller.Via, true
			spec := cron.Spec{Name: in.Job.Name, Schedule: in.Job.Schedule, Timezone: in.Job.Timezone, Payload: p}
			if _, _, err := sched.Validate(spec); err != nil {
				return out, "", err
			}
			if err := call.Approve(ctx, in.ApprovalSummary()); err != nil {
				return out, "", err
			}
			j, err := sched.Add(ctx, call.Caller.Key, spec)
			if err != nil {
				return out, "", err
			}
			if err := cronSession(ctx, call, j); err != nil {
				_, _ = sched.Remove(context.WithoutCancel(ctx), j.ID)
				return out, "", err
			}
			info := cronJobInfo(ctx, call, j)
			out.Job = &info
			out.Note = fmt.Sprintf("Each run is an agent turn in session %s; its result is announced to you.", info.SessionKey)
			return out, fmt.Sprintf("Cron job added: %s %q\nSchedule: %s\nNext run: %s\n%s", info.ID, info.Name, scheduleText(info), orDash(info.NextRun), out.Note), nil

		case "remove":
			j, err := ownJob(ctx, call, sched, in.Action, in.ID)
			if err != nil {
				return out, "", err
			}
			if err := call.Approve(ctx, in.ApprovalSummary()); err != nil {
				return out, "", err
			}
			removed, err := sched.Remove(ctx, j.ID)
			if err != nil {
				return out, "", err
			}
			info := cronJobInfo(ctx, call, j)
			out.Job, out.Removed = &info, removed
			if !removed {
				return out, fmt.Sprintf("Cron job %s was already removed.", j.ID), nil
			}
			return out, fmt.Sprintf("Cron job %s %q removed; it will not run again (a run in progress finishes). Its session %s and past runs are kept.", j.ID, j.Name, info.SessionKey), nil

		case "run":
			j, err := ownJob(ctx, call, sched, in.Action, in.ID)
			if err != nil {
				return out, "", err
			}
			if err := call.Approve(ctx, in.ApprovalSummary()); err != nil {
				return out, "", err
			}
			runID, err := sched.RunNow(ctx, j.ID)
			if err != nil {
				return out, "", err
			}
			if j, err = sched.Get(ctx, j.ID); err != nil {
				return out, "", err
			}
			info := cronJobInfo(ctx, call, j)
			out.Job, out.RunID = &info, runID
			out.Note = "The run is announced to you when it ends (spawn_status/spawn_result take its runId); the schedule is unchanged."
			return out, fmt.Sprintf("Cron job %s %q fired now: run %s in session %s.\n%s", j.ID, j.Name, runID, info.SessionKey, out.Note), nil
		}
		return out, "", fmt.Errorf("action: %q is not add, list, remove, run or status", in.Action)
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func scheduleText(j CronJobInfo) string {
	if !strings.Contains(j.Schedule, ":") && j.Timezone != "" {
		return j.Schedule + " (" + j.Timezone + ")"
	}
	return j.Schedule
}

func renderCronList(jobs []CronJobInfo) string {
	if len(jobs) == 0 {
		return "You have no cron jobs. Add one with action add."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d cron job(s):\n", len(jobs))
	for _, j := range jobs {
		state := "enabled"
		if !j.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(&b, "- %s %q · %s · %s · next %s", j.ID, j.Name, scheduleText(j), state, orDash(j.NextRun))
		if j.LastRunID != "" {
			fmt.Fprintf(&b, " · last run %s (%s)", j.LastRunID, orDash(j.LastRunState))
		}
		b.WriteString("\n")
	}
	return strings.TrimSpace(b.String())
}

func renderCronJob(j CronJobInfo) string {
	var b strings.Builder
	state := "enabled"
	if !j.Enabled {
		state = "disabled"
	}
	fmt.Fprintf(&b, "Cron job %s %q (%s)\nSchedule: %s\nNext run: %s\n", j.ID, j.Name, state, scheduleText(j), orDash(j.NextRun))
	if j.LastRunAt != 0 {
		fmt.Fprintf(&b, "Last fired: %s\n", msToRFC3339(j.LastRunAt))
	} else {
		b.WriteString("Last fired: never\n")
	}
	if j.LastRunID != "" {
		fmt.Fprintf(&b, "Last run: %s (%s)\n", j.LastRunID, orDash(j.LastRunState))
	}
	if j.LastNote != "" {
		fmt.Fprintf(&b, "Note: %s\n", j.LastNote)
	}
	fmt.Fprintf(&b, "Runs started: %d · session %s\nMessage: %s", j.RunCount, j.SessionKey, firstN(j.Payload.Message, 200))
	return b.String()
}

// CronTool is cron (action class mutate-session) over sched, which may be
// nil (the tool then says cron is unavailable).
func CronTool(sched *cron.Scheduler) *Tool {
	minEvery := cron.DefaultMinEvery
	if sched != nil {
		minEvery = sched.MinEvery()
	}
	return Define(Meta{Name: "cron", Title: "Scheduled agent turns", Class: policy.ClassMutate, DeferApproval: true,
		Annotations: Annotations{ReadOnly: false, Destructive: true, Idempotent: false, OpenWorld: true},
		Description: "Schedule agent turns (every: at least " + minEvery.String() + "). Each run is a turn in session cron:<jobId>, announced to you. " +
			"Missed runs fire once on restart; an occurrence is skipped while the previous run is still active."},
		cronTool(sched))
}
