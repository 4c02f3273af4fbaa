package runtime

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Ticket is what a caller gets back when a run is accepted.
type Ticket struct {
	RunID        string
	ChildKey     string
	SessionID    string
	Model        string
	Thinking     string
	Preset       string
	Depth        int
	Role         string // orchestrator | leaf
	Warnings     []string
	CreatedAt    int64
	Timeout      time.Duration
	Orchestrator bool
}

// Spawn prepares a child and queues its run on the subagent lane. It
// returns at once; the result is announced to the requester.
func (m *Manager) Spawn(ctx context.Context, gate *policy.Engine, spec ChildSpec, cleanup string) (*Ticket, error) {
	child, err := m.rt.PrepareChild(ctx, gate, spec)
	if err != nil {
		return nil, err
	}
	// The requester must be able to see the session it creates: otherwise
	// it could start work whose transcript, status and result it may not
	// read (its key_prefix, allowed_keys, cross_agent and visibility bound
	// where its children live, too).
	// The key is new (ChildKey: a new uuid), so no stored owner is read.
	if d := gate.NewChildAccess(ctx, spec.Parent, child.Key); !d.Allowed() {
		d.Message = "the child's session would be one you may not read: " + d.Message
		return nil, &policy.Denied{Decision: d}
	}
	if cleanup == "" {
		cleanup = "keep"
	}
	role := "leaf"
	if child.Orchestrator {
		role = "orchestrator"
	}
	t := child.Turn
	// The session, its task and the run are written in one transaction
	// before the spawn is accepted: a crash never leaves a child without its
	// task, nor a task without its run.
	task := store.Message{SessionKey: child.Key, Role: t.InputRole, Trust: t.InputTrust, Content: store.Content{Text: t.Input}}
	t.Input = ""
	opts := runOptions{Caller: child.Caller, ModelID: t.Model.ID, System: t.System, Thinking: t.Thinking, Choice: t.Controls.Choice,
		Input: t.Input, InputRole: t.InputRole, InputTrust: t.InputTrust, OutputSchema: t.OutputSchema, SessionID: child.SessionID,
		Initiator: spec.Parent.Key, Budget: t.Budget}
	if t.Controls.Active != nil {
		opts.Active, opts.HasActive = t.Controls.Active, true
	}
	run := &store.Run{Kind: KindSpawn, ChildKey: child.Key, RequesterKey: spec.Parent.Key, AgentID: child.Caller.AgentID,
		Label: spec.Label, Task: spec.Task, Preset: child.Preset, Model: t.Model.ID, Thinking: child.Thinking, Cleanup: cleanup,
		TimeoutMS: child.Timeout.Milliseconds(), Depth: child.Caller.Depth, Role: role,
		MaxActiveSiblings: m.rt.cfg.Agents.Defaults.Subagents.MaxChildrenPerAgent}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	run.ID = id.String()
	tk := &Ticket{RunID: run.ID, ChildKey: child.Key, SessionID: child.SessionID, Model: t.Model.ID, Thinking: child.Thinking,
		Preset: child.Preset, Depth: child.Caller.Depth, Role: role, Warnings: child.Warnings,
		Timeout: child.Timeout, Orchestrator: child.Orchestrator}
	if spec.Record != nil {
		run.Record = spec.Record(tk)
	}
	sess := child.Session
	if err := m.submitWith(ctx, &sess, []store.Message{task}, run, opts); err != nil {
		return nil, err
	}
	tk.CreatedAt = run.CreatedAt
	return tk, nil
}

// Continue queues another run on an existing child session (subagents
// send to a finished child, steer): same identity, model and prompt as its
// last run, the message as input. by is who asked: the new run is bounded
// by its layers on top of the child's own (which already carry its
// spawner's), and the announce goes to requester.
func (m *Manager) Continue(ctx context.Context, prev *store.Run, by policy.Caller, requester, message string) (*store.Run, error) {
	var opts runOptions
	if err := jsonUnmarshal(prev.Options, &opts); err != nil {
		return nil, err
	}
	opts.Input, opts.Silent = "", false
	opts.Caller.Layers = policy.Bound(by.Inherit(), opts.Caller.Layers...)
	for _, a := range by.Chain() {
		if a != opts.Caller.AgentID && !slices.Contains(opts.Caller.Via, a) {
			opts.Caller.Via = append(opts.Caller.Via, a)
		}
	}
	opts.Initiator = by.Key
	msg := store.Message{SessionKey: prev.ChildKey, Role: store.RoleUser, Trust: store.TrustInterSession, Content: store.Content{Text: message}}
	label := prev.Label
	if label == "" { // keep the child's name, not the new message's, in lists and announces
		label = firstLine(prev.Task, 60)
	}
	run := &store.Run{Kind: prev.Kind, ChildKey: prev.ChildKey, RequesterKey: requester, AgentID: prev.AgentID, Label: label,
		Task: message, Preset: prev.Preset, Model: prev.Model, Thinking: prev.Thinking, Cleanup: prev.Cleanup, TimeoutMS: prev.TimeoutMS,
		Depth: prev.Depth, Role: prev.Role}
	if err := m.submitWith(ctx, nil, []store.Message{msg}, run, opts); err != nil {
		return nil, err
	}
	return run, nil
}

// Steer stops a child's active run without announcing it and restarts the
// child with message. Steering one child more than once per steerEvery is
// refused (rate limit).
func (m *Manager) Steer(ctx context.Context, run *store.Run, by policy.Caller, message string) (*store.Run, error) {
	m.mu.Lock()
	if last, ok := m.steerAt[run.ChildKey]; ok && time.Since(last) < steerEvery {
		m.mu.Unlock()
		return nil, errSteerRate
	}
	m.steerAt[run.ChildKey] = time.Now()
	m.mu.Unlock()
	if !store.Terminal(run.State) {
		if _, err := m.kill(ctx, run.ID, "steered: replaced by a new run with a new message", false); err != nil {
			return nil, err
		}
	}
	return m.Continue(ctx, run, by, run.RequesterKey, message)
}
