package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Run kinds.
const (
	KindSpawn = "spawn"
	KindSend  = "send"
	KindCron  = "cron"
)

// Timings of the run manager.
const (
	heartbeatEvery = 2 * time.Second
	staleAfter     = 15 * time.Second
)

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
}

func (o runOptions) turn(rt *Runtime, key string) (Turn, error) {
	m, ok := rt.model(o.ModelID)
	if !ok {
		return Turn{}, fmt.Errorf("model %q is no longer configured in [[models]]", o.ModelID)
	}
	t := Turn{SessionKey: key, Caller: o.Caller, Model: m, System: o.System, Thinking: o.Thinking,
		Input: o.Input, InputRole: o.InputRole, InputTrust: o.InputTrust, OutputSchema: o.OutputSchema, MaxIterations: o.MaxIterations}
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
	host     string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	lane   chan struct{} // subagent lane: spawned children (max_concurrent)
	nested chan struct{} // nested lane: sessions_send and cron turns
	freed  chan struct{} // closed (and replaced) whenever a local run ends

	mu       sync.Mutex
	active   map[string]*activeRun
	notify   Notifier
	steerAt  map[string]time.Time
	onFinish []func(*store.Run)
	gate     *policy.Engine
	closing  atomic.Bool
}

// SetGate gives the manager the policy gate (for turns it starts itself,
// such as ping-pong replies).
func (m *Manager) SetGate(g *policy.Engine) {
	m.mu.Lock()
	m.gate = g
	m.mu.Unlock()
}

type activeRun struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
	prog   func(step int, note string)
}

// NewManager returns a manager for rt. Call Start to begin.
func NewManager(rt *Runtime) *Manager {
	host, _ := os.Hostname()
	n := rt.cfg.Agents.Defaults.Subagents.MaxConcurrent
	if n < 1 {
		n = 8
	}
	return &Manager{rt: rt, st: rt.st, instance: uuid.NewString(), pid: os.Getpid(), host: host,
		lane: make(chan struct{}, n), nested: make(chan struct{}, n), freed: make(chan struct{}),
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
	m.wg.Add(1)
	go m.heartbeat()
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
	m.mu.Lock()
	ids := make([]string, 0, len(m.active))
	for id := range m.active {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	// From here no queued run may start: a kill below frees a lane, and a
	// run waiting for one must stay queued for the next process.
	m.closing.Store(true)
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
	if err := m.st.CreateRun(ctx, sess, msgs, r); err != nil {
		return fmt.Errorf("record the run: %w", err)
	}
	m.scheduleKind(r.ID, r.Kind)
	return nil
}

// schedule starts the goroutine that waits for a lane slot and its
// session's turn, then runs it.
func (m *Manager) schedule(id string) {
	m.scheduleKind(id, "")
}

func (m *Manager) laneFor(kind string) chan struct{} {
	if kind == KindSpawn || kind == "" {
		return m.lane
	}
	return m.nested
}

// released tells goroutines waiting for a busy session to try again.
func (m *Manager) released() {
	m.mu.Lock()
	close(m.freed)
	m.freed = make(chan struct{})
	m.mu.Unlock()
}

func (m *Manager) scheduleKind(id, kind string) {
	runCtx, cancel := context.WithCancelCause(m.ctx)
	ar := &activeRun{cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.active[id] = ar
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() {
			cancel(nil)
			m.mu.Lock()
			delete(m.active, id)
			m.mu.Unlock()
			close(ar.done)
		}()
		if kind == "" {
			if r, err := m.st.GetRun(runCtx, id); err == nil {
				kind = r.Kind
			}
		}
		lane := m.laneFor(kind)
		for {
			select {
			case lane <- struct{}{}:
			case <-runCtx.Done():
				return // killed while queued: the kill recorded it
			}
			if m.closing.Load() {
				<-lane
				return // shutting down: the run stays queued for the next process
			}
			m.mu.Lock()
			freed := m.freed
			m.mu.Unlock()
			ok, err := m.st.ClaimRun(context.WithoutCancel(runCtx), id, m.instance, m.pid)
			if err == nil && ok {
				m.execute(runCtx, id, ar)
				<-lane
				m.released()
				return
			}
			<-lane
			if err != nil {
				m.rt.log.Error("claim run", "run", id, "err", err)
			}
			r, gerr := m.st.GetRun(context.WithoutCancel(runCtx), id)
			if gerr != nil || r.State != store.RunQueued {
				return // killed before it started, or claimed elsewhere: never run twice
			}
			// Its session is busy with another turn: wait for a local run to
			// end, or poll (the other turn may run in another process).
			select {
			case <-freed:
			case <-time.After(250 * time.Millisecond):
			case <-runCtx.Done():
				return
			}
		}
	}()
}

func (m *Manager) execute(ctx context.Context, id string, ar *activeRun) {
	wctx := context.WithoutCancel(ctx)
	var run *store.Run
	var opts runOptions
	defer func() {
		// A panic in a provider or the loop fails this run, not the server.
		if p := recover(); p != nil {
			m.rt.log.Error("run panicked", "run", id, "panic", p)
			if run != nil {
				m.finish(wctx, run, opts, Result{Status: StatusError, Note: fmt.Sprintf("internal error: %v (the run was stopped; the server keeps serving)", p)})
			}
		}
	}()
	run, err := m.st.GetRun(wctx, id)
	if err != nil {
		m.rt.log.Error("read run", "run", id, "err", err)
		return
	}
	if err := json.Unmarshal(run.Options, &opts); err != nil {
		m.finish(wctx, run, opts, Result{Status: StatusError, Note: "the run's stored options are unreadable: " + err.Error()})
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
	turn.DeferFinal = true // the final answer is written with the run's end
	res := m.rt.RunTurn(ctx, turn)
	m.finish(wctx, run, opts, res)
}

// finish records the outcome and the announce in one transaction, then
// runs cleanup. A run that was already ended (killed) is left as it is.
func (m *Manager) finish(ctx context.Context, run *store.Run, opts runOptions, res Result) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
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
		Archive: run.Kind == KindSpawn && (run.Cleanup == "delete" || res.CloseAfter)}
	if res.Final != nil {
		out.Messages = []store.Message{*res.Final}
	}
	run.State, run.Note, run.ResultText, run.ResultJSON = state, res.Note, res.Text, res.Output
	run.Iterations, run.ToolCalls, run.TokensIn, run.TokensOut, run.CostUSD = res.Iterations, res.ToolCalls, res.TokensIn, res.TokensOut, res.CostUSD
	now := m.st.NowMS()
	if run.StartedAt == 0 {
		run.StartedAt = now
	}
	run.EndedAt = now
	var ann *store.Announce
	if !opts.Silent && !continuesPingPong(run, opts) {
		ann = m.announce(run, opts.SessionID)
	}
	ok, err := m.st.FinishRun(wctx, run.ID, out, ann)
	if err != nil {
		m.rt.log.Error("record run outcome", "run", run.ID, "err", err)
		return
	}
	if ok {
		m.afterFinish(wctx, run, ann)
		if m.gate != nil {
			m.pingPong(wctx, m.gate, run, opts)
		}
	}
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

// Kill stops a run (queued or running, in this process or another) and,
// with cascade, every run its child session spawned, transitively. It
// returns the ids it killed.
func (m *Manager) Kill(ctx context.Context, id, note string, cascade bool) ([]string, error) {
	var killed []string
	queue := []string{id}
	seen := map[string]bool{}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if seen[cur] {
			continue
		}
		seen[cur] = true
		ok, err := m.kill(ctx, cur, note, true)
		if err != nil {
			return killed, err
		}
		if ok {
			killed = append(killed, cur)
		}
		if !cascade {
			break
		}
		run, err := m.st.GetRun(ctx, cur)
		if err != nil {
			return killed, err
		}
		kids, err := m.st.ListRuns(ctx, store.RunFilter{Requesters: []string{run.ChildKey}, States: []string{store.RunQueued, store.RunRunning}})
		if err != nil {
			return killed, err
		}
		for _, k := range kids {
			queue = append(queue, k.ID)
		}
	}
	return killed, nil
}

// kill records the kill (with its announce unless silent) and cancels the
// run if it is active here; another process notices at its next heartbeat.
func (m *Manager) kill(ctx context.Context, id, note string, announce bool) (bool, error) {
	run, err := m.st.GetRun(ctx, id)
	if err != nil {
		return false, err
	}
	if store.Terminal(run.State) {
		return false, nil
	}
	var opts runOptions
	_ = json.Unmarshal(run.Options, &opts)
	run.State, run.Note = store.RunKilled, note
	now := m.st.NowMS()
	if run.StartedAt == 0 {
		run.StartedAt = now
	}
	run.EndedAt = now
	var ann *store.Announce
	if announce && !opts.Silent {
		ann = m.announce(run, opts.SessionID)
	}
	ok, err := m.st.KillRun(context.WithoutCancel(ctx), id, note, ann)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	ar := m.active[id]
	m.mu.Unlock()
	if ar != nil {
		ar.cancel(ErrKilled)
	}
	if ok {
		m.afterFinish(context.WithoutCancel(ctx), run, ann)
	}
	return ok, nil
}

// Wait blocks until the run ends or d passes (bounded), and returns its
// current record either way.
func (m *Manager) Wait(ctx context.Context, id string, d time.Duration) (*store.Run, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		m.mu.Lock()
		ar := m.active[id]
		m.mu.Unlock()
		run, err := m.st.GetRun(ctx, id)
		if err != nil || store.Terminal(run.State) {
			return run, err
		}
		var done <-chan struct{}
		if ar != nil {
			done = ar.done
		}
		select {
		case <-done:
		case <-tick.C: // runs owned by another process: poll the store
		case <-deadline.C:
			return m.st.GetRun(context.WithoutCancel(ctx), id)
		case <-ctx.Done():
			return m.st.GetRun(context.WithoutCancel(ctx), id)
		}
	}
}

// WatchProgress forwards a local run's progress to fn until the returned
// stop is called.
func (m *Manager) WatchProgress(id string, fn func(step int, note string)) (stop func()) {
	m.mu.Lock()
	if ar := m.active[id]; ar != nil {
		ar.prog = fn
	}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		if ar := m.active[id]; ar != nil {
			ar.prog = nil
		}
		m.mu.Unlock()
	}
}

// heartbeat keeps this process's runs alive in the store, notices kills
// made by other processes, recovers runs of processes that died, and
// archives finished child sessions.
func (m *Manager) heartbeat() {
	defer m.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		if err := m.st.Heartbeat(ctx, m.instance); err != nil {
			m.rt.log.Warn("heartbeat", "err", err)
		}
		m.noticeRemoteKills(ctx)
		if err := m.recover(ctx); err != nil {
			m.rt.log.Warn("recover runs", "err", err)
		}
		m.sweepArchive(ctx)
		m.mu.Lock()
		n := m.notify
		m.mu.Unlock()
		if n != nil {
			n("") // poll: announces written by other processes
		}
		cancel()
	}
}

func (m *Manager) noticeRemoteKills(ctx context.Context) {
	m.mu.Lock()
	ids := make([]string, 0, len(m.active))
	for id := range m.active {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	states, err := m.st.RunStates(ctx, ids)
	if err != nil {
		return
	}
	for id, st := range states {
		if store.Terminal(st) {
			m.mu.Lock()
			if ar := m.active[id]; ar != nil {
				ar.cancel(ErrKilled)
			}
			m.mu.Unlock()
		}
	}
}

// recover handles runs owned by processes that are gone (pid dead on this
// host, or heartbeat older than staleAfter): a running run becomes unknown
// (it may have done part of its work; running it again could repeat side
// effects) and is announced; a queued run never started, so it is adopted
// and run here, exactly once.
func (m *Manager) recover(ctx context.Context) error {
	runs, err := m.st.ForeignActiveRuns(ctx, m.instance)
	if err != nil || len(runs) == 0 {
		return err
	}
	insts, err := m.st.Instances(ctx)
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	now := m.st.NowMS()
	for _, in := range insts {
		ok := now-in.HeartbeatAt < staleAfter.Milliseconds()
		if ok && in.Host == m.host && !pidAlive(in.PID) {
			ok = false
		}
		alive[in.ID] = ok
	}
	for _, r := range runs {
		if alive[r.OwnerInstance] {
			continue
		}
		switch r.State {
		case store.RunRunning:
			var opts runOptions
			_ = json.Unmarshal(r.Options, &opts)
			note := fmt.Sprintf("the process running it (pid %d) stopped before it finished; its outcome is unknown (the transcript keeps what it did)", r.OwnerPID)
			r.State, r.Note = store.RunUnknown, note
			if r.EndedAt == 0 {
				r.EndedAt = now
			}
			var ann *store.Announce
			if !opts.Silent {
				ann = m.announce(r, opts.SessionID)
			}
			ok, err := m.st.FinishRun(ctx, r.ID, store.Outcome{State: store.RunUnknown, Note: note, SessionStatus: store.RunUnknown}, ann)
			if err != nil {
				return err
			}
			if ok {
				m.rt.log.Info("run left running by a stopped process marked unknown", "run", r.ID, "pid", r.OwnerPID)
				m.afterFinish(ctx, r, ann)
			}
		case store.RunQueued:
			ok, err := m.st.AdoptRun(ctx, r.ID, r.OwnerInstance, m.instance, m.pid)
			if err != nil {
				return err
			}
			if ok {
				m.rt.log.Info("queued run of a stopped process resumed here", "run", r.ID)
				m.schedule(r.ID)
			}
		}
	}
	return nil
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (m *Manager) sweepArchive(ctx context.Context) {
	mins := m.rt.cfg.Agents.Defaults.Subagents.ArchiveAfterMinutes
	if mins <= 0 {
		return
	}
	keys, err := m.st.ArchiveDue(ctx, m.st.NowMS()-int64(mins)*60_000)
	if err != nil {
		m.rt.log.Warn("archive sweep", "err", err)
		return
	}
	for _, k := range keys {
		if err := m.st.Archive(ctx, k); err != nil {
			m.rt.log.Warn("archive", "key", k, "err", err)
		}
	}
}

// announce builds the durable announce of a finished run.
func (m *Manager) announce(run *store.Run, sessionID string) *store.Announce {
	text := strings.TrimSpace(run.ResultText)
	silent := text == "NO_REPLY" || text == "ANNOUNCE_SKIP" || text == "REPLY_SKIP"
	return &store.Announce{RequesterKey: run.RequesterKey, Status: run.State, Silent: silent, Body: AnnounceBody(run, sessionID)}
}

// AnnounceBody renders an announce: status, the child's reply fenced as
// untrusted data, and the stats line.
func AnnounceBody(run *store.Run, sessionID string) string {
	var b strings.Builder
	name := run.Label
	if name == "" {
		name = firstLine(run.Task, 60)
	}
	what := "sub-agent"
	switch run.Kind {
	case KindSend:
		what = "session turn"
	case KindCron:
		what = "scheduled turn"
	}
	fmt.Fprintf(&b, "[announce] %s %q (run %s) finished: %s\n", what, name, run.ID, run.State)
	if run.Note != "" {
		fmt.Fprintf(&b, "Note: %s\n", run.Note)
	}
	result := run.ResultText
	if len(run.ResultJSON) > 0 && string(run.ResultJSON) != result {
		result = strings.TrimSpace(result + "\n" + string(run.ResultJSON))
	}
	if result != "" {
		b.WriteString(Fence("session://"+run.ChildKey, result))
		b.WriteString("\n")
	}
	b.WriteString(StatsLine(run, sessionID))
	return b.String()
}

// StatsLine is the announce's stats line.
func StatsLine(run *store.Run, sessionID string) string {
	dur := time.Duration(0)
	if run.EndedAt > 0 && run.StartedAt > 0 {
		dur = time.Duration(run.EndedAt-run.StartedAt) * time.Millisecond
	}
	return fmt.Sprintf("Stats: runtime %s • tokens %s (in %s / out %s) • est $%.4f • sessionKey %s • sessionId %s • transcript session://%s",
		shortDuration(dur), HumanTokens(run.TokensIn+run.TokensOut), HumanTokens(run.TokensIn), HumanTokens(run.TokensOut), run.CostUSD,
		run.ChildKey, sessionID, run.ChildKey)
}

func shortDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d >= time.Second:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	default:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
}

// HumanTokens writes a token count for people: 1234 as 1.2k.
func HumanTokens(n int64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	default:
		return fmt.Sprintf("%d", n)
	}
}

func firstLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

// steerEvery is the minimum interval between two steers of one child.
const steerEvery = 5 * time.Second

var errSteerRate = errors.New("steer is rate-limited: one steer per child every 5 seconds; wait and try again")

// ErrSteerRate reports a steer refused by the rate limit.
func ErrSteerRate() error { return errSteerRate }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
