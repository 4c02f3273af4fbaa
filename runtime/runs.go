package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Run kinds.
const (
	KindSpawn = "spawn"
	KindSend  = "send"
	KindCron  = "cron"
)

// heartbeatEvery is how often the run manager refreshes its instance and
// runs ([cluster] stale_seconds, default 15, is how old a heartbeat may be
// before other processes take this one for dead); a variable so tests can
// prove that something happens without it.
var heartbeatEvery = 2 * time.Second

// remotePoll is how often a waiter reads the store for what another
// process may have done (a run's end, a busy session freed). On PostgreSQL
// a notification wakes it sooner; the poll is the fallback. A variable so
// tests can prove the wake-up by making the poll never come.
var remotePoll = 250 * time.Millisecond

// runOptions is everything needed to execute a run, stored with it so that
// a queued run can be executed by any process (after a restart, say).
type runOptions struct {
	Caller        policy.Caller   `json:"caller"`
	ModelID       string          `json:"model"`
	System        string          `json:"system"`
	Thinking      string          `json:"thinking,omitempty"`
	Active        []string        `json:"active_tools,omitempty"`
	HasActive     bool            `json:"has_active,omitempty"`
	Choice        *policy.Choice  `json:"tool_choice,omitempty"`
	Input         string          `json:"input"`
	InputRole     string          `json:"input_role,omitempty"`
	InputTrust    string          `json:"input_trust,omitempty"`
	OutputSchema  json.RawMessage `json:"output_schema,omitempty"`
	MaxIterations int             `json:"max_iterations,omitempty"`
	SessionID     string          `json:"session_id,omitempty"`
	Silent        bool            `json:"silent,omitempty"` // never announce (e.g. a steered-away run)
	PingPong      int             `json:"ping_pong,omitempty"`
	// Initiator is the session key of the principal that caused the run
	// (the requester of a spawn, the sender of a message, a cron job's
	// creator). Its authority is part of Caller.Layers.
	Initiator string `json:"initiator,omitempty"`
	// Budget is the spawn call's own spending limit (zero = none).
	Budget config.Budget `json:"budget,omitempty"`
}

func (o runOptions) turn(rt *Runtime, key string) (Turn, error) {
	m, ok := rt.model(o.ModelID)
	if !ok {
		return Turn{}, fmt.Errorf("model %q is no longer configured in [[models]]", o.ModelID)
	}
	t := Turn{SessionKey: key, Caller: o.Caller, Model: m, System: o.System, Thinking: o.Thinking,
		Input: o.Input, InputRole: o.InputRole, InputTrust: o.InputTrust, OutputSchema: o.OutputSchema, MaxIterations: o.MaxIterations,
		Budget: o.Budget}
	t.Controls.Choice = o.Choice
	if o.HasActive {
		t.Controls.Active = append([]string{}, o.Active...)
	}
	return t, nil
}

// Notifier is told when an announce for requester was written (so the MCP
// surface can push a notification at once).
type Notifier func(requester string)

// Manager owns the run registry's execution in this process: the subagent
// lane, the goroutines running runs, heartbeats, restart recovery and the
// archive sweeper. Start it once; Close cancels and waits for everything.
type Manager struct {
	rt       *Runtime
	st       *store.Store
	instance string
	pid      int
	host     string        // [cluster] host_id: processes with one host id share a pid space
	stale    time.Duration // [cluster] stale_seconds

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	lane   *lane         // subagent lane: spawned children (max_concurrent)
	nested *lane         // nested lane: sessions_send and cron turns
	freed  chan struct{} // closed (and replaced) whenever a local run ends

	mu         sync.Mutex
	active     map[string]*activeRun
	notify     Notifier
	parkNotify ParkNotifier
	steerAt    map[string]time.Time
	onFinish   []func(*store.Run)
	gate       *policy.Engine
	closing    atomic.Bool
	claimMu    sync.RWMutex // claims hold it for reading; Close takes it to set closing
}

// SetGate gives the manager the policy gate (for turns it starts itself,
// such as ping-pong replies).
func (m *Manager) SetGate(g *policy.Engine) {
	m.mu.Lock()
	m.gate = g
	m.mu.Unlock()
}

func (m *Manager) currentGate() *policy.Engine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gate
}

type activeRun struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
	prog   func(step int, note string)
	known  []store.Message // the transcript when it was queued (scheduleKnown); nil: unknown
}

// NewManager returns a manager for rt. Call Start to begin.
func NewManager(rt *Runtime) *Manager {
	n := rt.cfg.Agents.Defaults.Subagents.MaxConcurrent
	if n < 1 {
		n = 8
	}
	return &Manager{rt: rt, st: rt.st, instance: uuid.NewString(), pid: os.Getpid(),
		host: rt.cfg.Cluster.HostIDFrom(nil), stale: rt.cfg.Cluster.Stale(),
		lane: newLane(n), nested: newLane(n), freed: make(chan struct{}),
		active: map[string]*activeRun{}, steerAt: map[string]time.Time{}}
}

// Instance is this process's id in the instances table.
func (m *Manager) Instance() string { return m.instance }

// SetNotifier sets the announce callback.
func (m *Manager) SetNotifier(n Notifier) {
	m.mu.Lock()
	m.notify = n
	m.mu.Unlock()
}

// Start registers this process, recovers runs left by dead processes and
// starts the heartbeat. ctx bounds the manager's life; Close also ends it.
func (m *Manager) Start(ctx context.Context) error {
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := m.st.RegisterInstance(ctx, store.Instance{ID: m.instance, PID: m.pid, Host: m.host}); err != nil {
		return fmt.Errorf("register this process: %w", err)
	}
	if err := m.recover(ctx); err != nil {
		m.rt.log.Error("recover runs of stopped processes", "err", err)
	}
	m.wg.Add(2)
	go m.heartbeat()
	go m.maintain()
	if m.st.Backend() == store.BackendPostgres {
		m.wg.Add(1)
		go m.watchRemote()
	}
	return nil
}

// Close stops accepting work and waits for every goroutine. Runs this
// process was executing are recorded as killed (with their announces);
// runs still queued here never started, so they stay queued and the next
// process on this database adopts and runs them (this one's instance row
// is gone, which marks it dead).
func (m *Manager) Close() error {
	if m.cancel == nil {
		return nil
	}
	// From here no queued run may start: a kill below frees a lane (and
	// its session), and a run waiting for one must stay queued for the
	// next process. Every run claimed before this is in m.active.
	m.claimMu.Lock() // waits for claims in flight
	m.closing.Store(true)
	m.claimMu.Unlock()
	m.mu.Lock()
	ids := make([]string, 0, len(m.active))
	for id := range m.active {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	ctx := context.Background()
	if states, err := m.st.RunStates(ctx, ids); err == nil {
		for _, id := range ids {
			if states[id] == store.RunRunning {
				m.kill(ctx, id, "the server shut down while the run was active", true)
			}
		}
	}
	m.cancel()
	m.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.st.UnregisterInstance(ctx, m.instance)
}

// submit records a queued run and schedules it in this process. The run's
// options hold everything needed to execute it.
func (m *Manager) submit(ctx context.Context, r *store.Run, opts runOptions) error {
	return m.submitWith(ctx, nil, nil, r, opts)
}

// submitWith is submit that also creates the run's session (when sess is
// non-nil) and appends msgs, all in the run's transaction.
func (m *Manager) submitWith(ctx context.Context, sess *store.Session, msgs []store.Message, r *store.Run, opts runOptions) error {
	b, err := json.Marshal(opts)
	if err != nil {
		return err
	}
	r.Options = b
	r.OwnerInstance, r.OwnerPID = m.instance, m.pid
	if r.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		r.ID = id.String()
	}
	// A new child's run that finds a lane slot free is claimed by the
	// transaction that creates it (one write fewer per spawn; nothing else
	// can hold its brand-new session): it says running from that commit
	// and its turn starts right after. A run that finds the lane full is
	// created queued, says so, and waits for a slot as before.
	if sess != nil && r.Kind == KindSpawn && opts.Input == "" {
		if sl, ok := m.takeSlot(r.Kind); ok {
			defer m.claimMu.RUnlock() // taken by takeSlot: Close waits for this claim to be in m.active
			// Tracked before it can say running, so a kill finds it.
			runCtx, ar, done := m.track(r.ID)
			r.State = store.RunRunning
			if err := m.st.CreateRun(ctx, sess, msgs, r); err != nil {
				done()
				sl.release()
				return fmt.Errorf("record the run: %w", err)
			}
			if r.State != store.RunRunning { // its session was busy after all: queued
				done()
				sl.release()
				m.scheduleKind(r.ID, r.Kind)
				return nil
			}
			run := *r // the turn's own copy: the caller keeps r
			run.Record = nil
			m.startClaimed(runCtx, ar, done, r.ID, sl, &run)
			return nil
		}
	}
	if err := m.st.CreateRun(ctx, sess, msgs, r); err != nil {
		return fmt.Errorf("record the run: %w", err)
	}
	m.scheduleKnown(r.ID, r.Kind, r.Transcript)
	return nil
}

// execute runs a claimed run: its turn, then its outcome. The lane slot
// sl is given back when the turn returns, or passed to the first run
// waiting for one, claimed in the transaction that records this run's
// end (the caller releases it too, which is then a no-op). claimed is the
// run as its claim left it (nil: it is read here).
func (m *Manager) execute(ctx context.Context, id string, ar *activeRun, sl *slot, claimed *store.Run) {
	wctx := context.WithoutCancel(ctx)
	var run *store.Run
	var opts runOptions
	var next *handoff
	defer func() { next.give(nil) }() // a panic between takeNext and the finish: the waiter claims its run itself
	defer func() {
		// A panic in a provider or the loop fails this run, not the server.
		if p := recover(); p != nil {
			m.rt.log.Error("run panicked", "run", id, "panic", p)
			if run != nil {
				m.finish(wctx, run, opts, Result{Status: StatusError, Note: fmt.Sprintf("internal error: %v (the run was stopped; the server keeps serving)", p)})
			}
		}
	}()
	run, err := claimed, error(nil)
	if run == nil {
		if run, err = m.st.GetRun(wctx, id); err != nil {
			m.rt.log.Error("read run", "run", id, "err", err)
			return
		}
	}
	if err := json.Unmarshal(run.Options, &opts); err != nil {
		m.finish(wctx, run, opts, Result{Status: StatusError, Note: "the run's stored options are unreadable: " + err.Error()})
		return
	}
	// Authority is resolved now, against the configuration in force in the
	// process that executes the run: a preset that was removed fails closed.
	gate := m.currentGate()
	if gate == nil {
		m.finish(wctx, run, opts, Result{Status: StatusError, Note: "no policy gate in this process: the run is refused (fail closed)"})
		return
	}
	if opts.Caller.Layers, err = gate.Refresh(opts.Caller.Layers); err != nil {
		m.finish(wctx, run, opts, Result{Status: StatusError, Note: err.Error()})
		return
	}
	turn, err := opts.turn(m.rt, run.ChildKey)
	if err != nil {
		m.finish(wctx, run, opts, Result{Status: StatusError, Note: err.Error()})
		return
	}
	turn.Caller.RunID = run.ID
	turn.Progress = func(step int, note string) {
		m.mu.Lock()
		p := ar.prog
		m.mu.Unlock()
		if p != nil {
			p(step, note)
		}
	}
	if run.TimeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(run.TimeoutMS)*time.Millisecond, context.DeadlineExceeded)
		defer cancel()
	}
	// A run created with its session just now (and claimed with it) starts
	// from the transcript it wrote; one that was queued since then reads
	// only what came after it.
	turn.Known, turn.KnownCurrent = run.Transcript, run.Transcript != nil
	if turn.Known == nil && ar != nil && len(ar.known) > 0 {
		// Nothing was appended while it waited when its claim found the
		// session's newest message where the known transcript ends (seqs
		// only grow).
		turn.Known = ar.known
		turn.KnownCurrent = claimed != nil && claimed.SessionLastSeq == ar.known[len(ar.known)-1].Seq
	}
	turn.DeferFinal = true // the final answer is written with the run's end
	turn.ParkableRun = true
	// Only a run that made a tool call can have parked (a park is a tool
	// call waiting for approval, recorded with the run's counters): a run
	// that made none has no decision to resume from, and is not read for one.
	if run.ToolCalls > 0 {
		a, err := m.st.DecidedApproval(wctx, run.ID)
		switch {
		case err == nil:
			turn.Resume = a // resuming from a park: counters continue
		case !errors.Is(err, store.ErrNotFound):
			sl.release()
			m.finish(wctx, run, opts, Result{Status: StatusError, Note: "read the run's approval: " + err.Error()})
			return
		}
	}
	started := time.Now()
	res := m.rt.RunTurn(ctx, turn)
	if res.Status == StatusInputRequired && res.Parked != nil {
		sl.release()
	} else {
		next = sl.takeNext()
	}
	prior := Result{Iterations: run.Iterations, ToolCalls: run.ToolCalls, TokensIn: run.TokensIn, TokensOut: run.TokensOut, CostUSD: run.CostUSD}
	res = res.after(prior)
	if res.Status == StatusInputRequired && res.Parked != nil {
		m.park(wctx, run, opts, res, time.Since(started))
		return
	}
	// A final answer ends the run unless a message was delivered to its
	// session after the newest one the turn read (checked in the end's
	// transaction): then the answer is kept, the run goes on with one
	// more call that reads it, and the lane slot (next's waiter) waits.
	for m.finishAndPass(wctx, run, opts, res, next) {
		cont := turn
		cont.Known, cont.KnownCurrent, cont.Resume, cont.Input = nil, false, nil, ""
		cont.MaxIterations = m.maxIterations(turn) - (res.Iterations - prior.Iterations)
		more := m.rt.RunTurn(ctx, cont).after(res)
		if more.ModelServed == "" {
			more.ModelServed = res.ModelServed
		}
		res = more
		if res.Status == StatusInputRequired && res.Parked != nil {
			next.give(nil)
			m.park(wctx, run, opts, res, time.Since(started))
			return
		}
	}
}

// maxIterations is the bound on a turn's model calls RunTurn applies.
func (m *Manager) maxIterations(t Turn) int {
	if t.MaxIterations > 0 {
		return t.MaxIterations
	}
	return m.rt.cfg.Agents.Defaults.MaxIterations
}

// after is r continuing from prev: prev's counters added to r's.
func (r Result) after(prev Result) Result {
	r.Iterations += prev.Iterations
	r.ToolCalls += prev.ToolCalls
	r.TokensIn += prev.TokensIn
	r.TokensOut += prev.TokensOut
	r.CostUSD += prev.CostUSD
	return r
}

// finish records the outcome and the announce in one transaction, then
// runs cleanup. A run that was already ended (killed) is left as it is.
func (m *Manager) finish(ctx context.Context, run *store.Run, opts runOptions, res Result) {
	m.finishAndPass(ctx, run, opts, res, nil)
}

// finishAndPass is finish that also gives the lane slot next is taking
// (may be nil) to its waiting run, claimed in the same transaction when
// it can be. It returns true, with nothing ended and the slot not given,
// when res is a final answer (Result.Final, MayContinue) and a message
// was delivered to the run's session after res.ReadSeq: the answer was
// written, and the run must make one more call.
func (m *Manager) finishAndPass(ctx context.Context, run *store.Run, opts runOptions, res Result, next *handoff) (more bool) {
	defer func() {
		if !more {
			next.give(nil)
		}
	}()
	state := res.Status
	if state == "" {
		state = store.RunError
	}
	status := "done"
	if state != store.RunOK {
		status = state
	}
	out := store.Outcome{State: state, Note: res.Note, ResultText: res.Text, ResultJSON: res.Output, Iterations: res.Iterations,
		ToolCalls: res.ToolCalls, TokensIn: res.TokensIn, TokensOut: res.TokensOut, CostUSD: res.CostUSD, SessionStatus: status,
		Archive: run.Kind == KindSpawn && (run.Cleanup == "delete" || res.CloseAfter), ChildKey: run.ChildKey}
	if res.Final != nil {
		out.Messages = []store.Message{*res.Final}
		out.UnlessDelivered, out.ReadSeq = res.MayContinue, res.ReadSeq
	}
	run.State, run.Note, run.ResultText, run.ResultJSON = state, res.Note, res.Text, res.Output
	run.Iterations, run.ToolCalls, run.TokensIn, run.TokensOut, run.CostUSD = res.Iterations, res.ToolCalls, res.TokensIn, res.TokensOut, res.CostUSD
	if res.ModelServed != "" {
		run.ModelServed = res.ModelServed
		out.ModelServed = res.ModelServed
	}
	now := m.st.NowMS()
	if run.StartedAt == 0 {
		run.StartedAt = now
	}
	run.EndedAt = now
	var ann *store.Announce
	if !opts.Silent && !continuesPingPong(run, opts) {
		ann = m.announce(run, opts.SessionID)
	}
	ok, err := m.recordOutcome(ctx, run.ID, out, ann, next)
	if errors.Is(err, store.ErrDeliveredMeanwhile) {
		return true
	}
	if err != nil {
		m.rt.log.Error("record run outcome", "run", run.ID, "err", err)
		return false
	}
	if ok {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		m.afterFinish(wctx, run, ann)
		if m.gate != nil {
			m.pingPong(wctx, m.gate, run, opts)
		}
	}
	return false
}

// recordOutcome writes a run's outcome, trying again after a failure until
// it is committed or the manager closes. The run is this process's: while
// the process lives its heartbeat keeps recovery away from it, so an
// outcome given up on after one failed write (the write's 10 s deadline
// passed in a long writer queue, PostgreSQL refused a connection, a batch
// kept conflicting past its retries) left the run running for ever. Each
// attempt is bounded; the attempts end with the manager (Close records a
// run still running then as killed). FinishRun changes only a run not
// ended yet, so an attempt after one whose commit was in doubt is safe.
func (m *Manager) recordOutcome(ctx context.Context, id string, out store.Outcome, ann *store.Announce, next *handoff) (bool, error) {
	wait := remotePoll
	for {
		err := lifecycleFault("finish", id)
		var ok bool
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			ok, err = m.finishRun(wctx, id, out, ann, next)
			cancel()
		}
		if errors.Is(err, store.ErrDeliveredMeanwhile) {
			return false, err // the run goes on, holding its slot
		}
		// The slot goes to its waiter after the first attempt, claimed or
		// not: a retry must not hold up the next run. So a retry ends the
		// run whatever was delivered (that stays for the next run).
		next.give(nil)
		next = nil
		out.UnlessDelivered = false
		if err == nil {
			return ok, nil
		}
		m.rt.log.Warn("record run outcome (trying again)", "run", id, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-m.ctx.Done():
			t.Stop()
			return false, err
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// finishRun is store.FinishRun that also, when next is set, claims next's
// waiting run in the same transaction and gives it the slot. The claim
// holds claimMu like every claim: none lands once Close began.
func (m *Manager) finishRun(ctx context.Context, id string, out store.Outcome, ann *store.Announce, next *handoff) (bool, error) {
	if next == nil {
		return m.st.FinishRun(ctx, id, out, ann)
	}
	m.claimMu.RLock()
	defer m.claimMu.RUnlock()
	if m.closing.Load() {
		out.UnlessDelivered = false // no more calls: a delivery stays for the session's next run
		return m.st.FinishRun(ctx, id, out, ann)
	}
	nc := &store.NextClaim{RunID: next.w.id, Instance: m.instance, PID: m.pid, Start: startInput}
	ok, claimed, err := m.st.FinishRunAndClaim(ctx, id, out, ann, nc)
	if err == nil {
		next.give(claimed)
	}
	return ok, err
}

func (m *Manager) afterFinish(ctx context.Context, run *store.Run, ann *store.Announce) {
	if ann != nil {
		m.mu.Lock()
		n := m.notify
		m.mu.Unlock()
		if n != nil {
			n(ann.RequesterKey)
		}
	}
	m.mu.Lock()
	hooks := append([]func(*store.Run){}, m.onFinish...)
	m.mu.Unlock()
	for _, h := range hooks {
		h(run)
	}
}

// OnFinish registers a hook called after a run this process ran ended.
func (m *Manager) OnFinish(h func(*store.Run)) {
	m.mu.Lock()
	m.onFinish = append(m.onFinish, h)
	m.mu.Unlock()
}

var errSteerRate = errors.New("steer is rate-limited: one steer per child every 5 seconds; wait and try again")

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
