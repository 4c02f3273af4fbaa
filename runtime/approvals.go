package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Park is a tool's answer that its call needs a human's approval and that
// nobody can be asked now ([approval] <class> = "elicit", no client to ask).
type Park struct {
	Class   string
	Summary string
}

// Parked is the call a run parked on, stored in its approval row: the
// whole batch the model issued (in order) with the results of the other
// calls, so the turn resumes exactly where it stopped.
type Parked struct {
	CallID  string                `json:"call_id"`
	Name    string                `json:"name"`
	Args    json.RawMessage       `json:"args,omitempty"`
	Class   string                `json:"class"`
	Summary string                `json:"summary,omitempty"`
	Results []provider.ToolResult `json:"results"` // in call order; the parked call's slot is filled on resume
}

// parkBatch returns what to park on when one of a batch's calls asked for
// approval: the first such call; the other calls that asked are refused
// (they can be issued again once the run resumes).
func parkBatch(calls []provider.ToolCall, results []provider.ToolResult, parks []*Park) *Parked {
	var p *Parked
	for i, pk := range parks {
		if pk == nil {
			continue
		}
		if p == nil {
			p = &Parked{CallID: calls[i].ID, Name: calls[i].Name, Args: calls[i].Args, Class: pk.Class, Summary: pk.Summary}
			continue
		}
		results[i].IsError = true
		results[i].Content = fmt.Sprintf("error: %s was not run: another call of this batch (%s) is waiting for a human's approval; call it again after that one is decided", calls[i].Name, p.Name)
	}
	if p != nil {
		p.Results = results
	}
	return p
}

type approvedKey struct{}

// WithApproved marks ctx as carrying a human's approval for the one call
// made with it (a parked call being resumed).
func WithApproved(ctx context.Context) context.Context {
	return context.WithValue(ctx, approvedKey{}, true)
}

// Approved reports whether ctx carries an approval (WithApproved).
func Approved(ctx context.Context) bool {
	v, _ := ctx.Value(approvedKey{}).(bool)
	return v
}

// resume applies a decided approval: the decision is marked consumed
// first (so the approved call runs at most once, even if this process dies
// while it runs), then the call runs with the approval or is refused.
func (r *Runtime) resume(ctx context.Context, tb ToolBox, c policy.Caller, a *store.Approval) ([]provider.ToolResult, error) {
	var p Parked
	if err := json.Unmarshal(a.Call, &p); err != nil {
		return nil, fmt.Errorf("approval %s: stored call unreadable: %v", a.ID, err)
	}
	ok, err := r.st.ConsumeApproval(context.WithoutCancel(ctx), a.ID)
	if err != nil {
		return nil, err
	}
	var out provider.ToolResult
	switch {
	case !ok:
		out = provider.ToolResult{IsError: true, Content: fmt.Sprintf("error: %s was not run: its approval %s was already applied once", p.Name, a.ID)}
	case a.State == store.ApprovalApproved:
		res := tb.Call(WithApproved(ctx), c, p.Name, p.Args)
		out = provider.ToolResult{Content: res.Text, IsError: res.IsError}
	case a.State == store.ApprovalExpired:
		out = provider.ToolResult{IsError: true, Content: fmt.Sprintf("forbidden: %s was denied: nobody decided approval %s in time (%s)", p.Name, a.ID, a.DecidedBy)}
	default:
		out = provider.ToolResult{IsError: true, Content: fmt.Sprintf("forbidden: %s was denied by %s (approval %s)", p.Name, a.DecidedBy, a.ID)}
	}
	out.CallID, out.Name = p.CallID, p.Name
	results := p.Results
	found := false
	for i := range results {
		if results[i].CallID == p.CallID {
			results[i], found = out, true
		}
	}
	if !found {
		results = append(results, out)
	}
	return results, nil
}

// ParkMinutes is [approval] park_minutes: how long a parked call waits
// for a decision before it is denied (default 60).
func ParkMinutes(cfg *config.Config) int {
	if v, ok := cfg.Approval[config.ApprovalParkMinutes]; ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return 60
}

// ParkNotifier is told when a run parked, with the requester to notify,
// the approval's id and a one-line text saying what waits.
type ParkNotifier func(requester, approvalID, text string)

// SetParkNotifier sets the callback for parked runs.
func (m *Manager) SetParkNotifier(n ParkNotifier) {
	m.mu.Lock()
	m.parkNotify = n
	m.mu.Unlock()
}

// park records a parked run and its approval, and tells the requester.
func (m *Manager) park(ctx context.Context, run *store.Run, opts runOptions, res Result, elapsed time.Duration) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p := res.Parked
	b, err := json.Marshal(p)
	if err != nil {
		m.finish(ctx, run, opts, Result{Status: StatusError, Note: "park the run: " + err.Error()})
		return
	}
	left := int64(0)
	if run.TimeoutMS > 0 {
		left = max(run.TimeoutMS-elapsed.Milliseconds(), 1)
	}
	id := uuid.NewString()
	a := &store.Approval{ID: id, RunID: run.ID, Tool: p.Name, ArgsSummary: summarizeArgs(p), Class: p.Class,
		CallerKey: run.ChildKey, RequesterKey: run.RequesterKey, Call: b,
		ExpiresAt: m.st.NowMS() + int64(ParkMinutes(m.rt.cfg))*60_000}
	out := store.Outcome{Note: res.Note, Iterations: res.Iterations, ToolCalls: res.ToolCalls, TokensIn: res.TokensIn,
		TokensOut: res.TokensOut, CostUSD: res.CostUSD, ModelServed: res.ModelServed}
	ok, err := m.st.ParkRun(wctx, out, left, a)
	if err != nil {
		m.rt.log.Error("park run", "run", run.ID, "err", err)
		m.finish(ctx, run, opts, Result{Status: StatusError, Note: "park the run for approval: " + err.Error()})
		return
	}
	if !ok {
		return // killed meanwhile
	}
	m.rt.log.Info("run parked for approval", "run", run.ID, "tool", p.Name, "approval", id)
	m.mu.Lock()
	n := m.parkNotify
	m.mu.Unlock()
	if n != nil {
		n(run.RequesterKey, id, fmt.Sprintf("Run %s (%s) is waiting for approval %s of %s (%s): approvals {action: approve|deny, id: %q}", run.ID, run.ChildKey, id, p.Name, p.Class, id))
	}
}

func summarizeArgs(p *Parked) string {
	s := p.Summary
	if s == "" {
		s = string(p.Args)
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// ErrNotPending is returned by Decide for an approval already decided.
var ErrNotPending = errors.New("the approval is no longer pending (already decided or expired)")

// Decide approves or denies a pending approval; its run is queued again
// here and resumes (any process on the database may run it if this one
// stops first).
func (m *Manager) Decide(ctx context.Context, id string, approve bool, by string) error {
	state := store.ApprovalDenied
	if approve {
		state = store.ApprovalApproved
	}
	ok, err := m.st.DecideApproval(ctx, id, state, by, m.instance, m.pid)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotPending
	}
	a, err := m.st.GetApproval(ctx, id)
	if err != nil {
		return err
	}
	m.resumeRun(a.RunID)
	return nil
}

func (m *Manager) resumeRun(runID string) {
	if m.ctx == nil {
		return
	}
	// Like a claim, the check and the goroutine's start are one step for
	// Close (claimMu).
	m.claimMu.RLock()
	defer m.claimMu.RUnlock()
	if m.closing.Load() {
		return // stays queued for the next process
	}
	m.mu.Lock()
	ar, busy := m.active[runID]
	if !busy {
		m.mu.Unlock()
		m.schedule(runID)
		return
	}
	// The execution that parked it has not quite returned (decided within
	// moments): schedule once it has, or the queued run would wait for a
	// restart.
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		select {
		case <-ar.done:
			m.resumeRun(runID)
		case <-m.ctx.Done():
		}
	}()
}

// sweepApprovals denies approvals nobody decided in time and resumes
// their runs (with the refusal).
func (m *Manager) sweepApprovals(ctx context.Context) {
	runs, err := m.st.ExpireApprovals(ctx, m.instance, m.pid)
	if err != nil {
		m.rt.log.Warn("expire approvals", "err", err)
		return
	}
	for _, id := range runs {
		m.resumeRun(id)
	}
}
