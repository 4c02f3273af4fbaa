package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// schedule starts the goroutine that waits for a lane slot and its
// session's turn, then runs it.
func (m *Manager) schedule(id string) {
	m.scheduleKind(id, "")
}

func (m *Manager) laneFor(kind string) *lane {
	if kind == KindSpawn || kind == "" {
		return m.lane
	}
	return m.nested
}

// lane bounds how many runs of one kind run their turns at once in this
// process. A run waiting for a slot waits in line (oldest first): a slot
// given back goes to the first in line, and a run whose turn ended may
// pass its slot to the first in line with that run already claimed, in
// the transaction that records its own end (slot.takeNext).
type lane struct {
	mu      sync.Mutex
	free    int
	waiters []*laneWaiter
}

// laneWaiter is a run waiting for a slot. grant (buffered) receives one
// value when the slot is given: the run as claimed for it, or nil when it
// must claim it itself.
type laneWaiter struct {
	id    string
	grant chan *store.Run
}

func newLane(n int) *lane { return &lane{free: n} }

// tryTake takes a free slot without waiting.
func (l *lane) tryTake() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.free > 0 && len(l.waiters) == 0 {
		l.free--
		return true
	}
	return false
}

// acquire waits for a slot. claimed is non-nil when the slot came with
// the run already claimed for this process (its turn must run now, even
// when ctx ended meanwhile: its end is recorded by whoever runs it). ok is
// false when ctx ended first and no slot is held.
func (l *lane) acquire(ctx context.Context, id string) (claimed *store.Run, ok bool) {
	l.mu.Lock()
	if l.free > 0 && len(l.waiters) == 0 {
		l.free--
		l.mu.Unlock()
		return nil, true
	}
	w := &laneWaiter{id: id, grant: make(chan *store.Run, 1)}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()
	if laneWaitHook != nil {
		laneWaitHook(id)
	}
	select {
	case c := <-w.grant:
		return c, true
	case <-ctx.Done():
	}
	l.mu.Lock()
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			l.mu.Unlock()
			return nil, false
		}
	}
	l.mu.Unlock()
	// Already taken out of line: the slot is on its way (the run ending
	// before it gives it once its own write returns, which is bounded).
	if r := <-w.grant; r != nil {
		return r, true
	}
	l.release()
	return nil, false
}

// next takes the first waiter out of line, the slot passing to it, or
// frees the slot when nobody waits (nil).
func (l *lane) next() *laneWaiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiters) > 0 {
		w := l.waiters[0]
		l.waiters[0] = nil
		l.waiters = l.waiters[1:]
		return w
	}
	l.free++
	return nil
}

// release gives a slot back: to the first waiter (which claims its run
// itself), or to the free count.
func (l *lane) release() {
	if w := l.next(); w != nil {
		w.grant <- nil
	}
}

// slot is one lane slot held by a run; it is given back (or passed on)
// once, by whichever of release and takeNext comes first.
type slot struct {
	l    *lane
	once sync.Once
}

func (s *slot) release() { s.once.Do(s.l.release) }

// takeNext ends this run's hold on its slot: it returns the first waiter,
// to whom the slot now belongs (the caller must give it exactly once,
// with whether its run was claimed), or nil when nobody waits (the slot
// was freed). nil too when the slot was already given back.
func (s *slot) takeNext() *handoff {
	var h *handoff
	s.once.Do(func() {
		if w := s.l.next(); w != nil {
			h = &handoff{w: w}
		}
	})
	return h
}

// handoff is a slot on its way to a waiter.
type handoff struct {
	w    *laneWaiter
	once sync.Once
}

// give hands the slot over with the run claimed for the waiter (nil: it
// claims its run itself); only the first call counts.
func (h *handoff) give(claimed *store.Run) {
	if h != nil {
		h.once.Do(func() { h.w.grant <- claimed })
	}
}

// laneWaitHook, when set (tests), is told each time a run starts waiting
// in line for a lane slot.
var laneWaitHook func(id string)

// busyWaitHook, when set (tests), is told each time a queued run finds its
// session busy and starts waiting.
var busyWaitHook func(id string)

// lifecycleFaultHook, when set (tests), is asked before the store calls
// that move a run through its life in this process: "claim", "state" (the
// read after a failed claim) and "finish". An error it returns stands for
// that call failing (PostgreSQL unreachable or out of connections, a batch
// that kept conflicting past its retries, a write's deadline passing in a
// long writer queue).
var lifecycleFaultHook func(op, id string) error

func lifecycleFault(op, id string) error {
	if lifecycleFaultHook == nil {
		return nil
	}
	return lifecycleFaultHook(op, id)
}

// released tells goroutines waiting for a busy session to try again.
func (m *Manager) released() {
	m.mu.Lock()
	close(m.freed)
	m.freed = make(chan struct{})
	m.mu.Unlock()
}

// takeSlot takes a free slot of kind's lane without waiting, under
// claimMu (held for reading on success: the caller releases it once the
// run it claims is in m.active). ok is false when the lane is full or the
// manager is closing.
func (m *Manager) takeSlot(kind string) (*slot, bool) {
	l := m.laneFor(kind)
	m.claimMu.RLock()
	if m.closing.Load() || !l.tryTake() {
		m.claimMu.RUnlock()
		return nil, false
	}
	return &slot{l: l}, true
}

// startClaimed runs a run already claimed for this process (CreateRun in
// state running), tracked by m.track, holding the lane slot s. run is the
// run as created (the goroutine's own copy).
func (m *Manager) startClaimed(runCtx context.Context, ar *activeRun, done func(), id string, s *slot, run *store.Run) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer done()
		m.execute(runCtx, id, ar, s, run)
		s.release()
		m.released()
	}()
}

// track registers id as active in this process; done unregisters it.
func (m *Manager) track(id string) (context.Context, *activeRun, func()) {
	runCtx, cancel := context.WithCancelCause(m.ctx)
	ar := &activeRun{cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.active[id] = ar
	m.mu.Unlock()
	return runCtx, ar, func() {
		cancel(nil)
		m.mu.Lock()
		delete(m.active, id)
		m.mu.Unlock()
		close(ar.done)
	}
}

func (m *Manager) scheduleKind(id, kind string) { m.scheduleKnown(id, kind, nil) }

// scheduleKnown is scheduleKind for a run whose session's transcript was
// known when it was queued (store.Run.Transcript of a new child): its
// turn reads only what was appended since.
func (m *Manager) scheduleKnown(id, kind string, known []store.Message) {
	runCtx, ar, done := m.track(id)
	ar.known = known
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer done()
		if kind == "" {
			if r, err := m.st.GetRun(runCtx, id); err == nil {
				kind = r.Kind
			}
		}
		l := m.laneFor(kind)
		for {
			claimed, ok := l.acquire(runCtx, id)
			if !ok {
				return // killed while queued (the kill recorded it), or shutting down
			}
			s := &slot{l: l}
			if claimed != nil {
				// Claimed for this process in the transaction that
				// recorded the end of the run whose slot this was.
				m.execute(runCtx, id, ar, s, claimed)
				s.release()
				m.released()
				return
			}
			// The check and the claim are one step for Close (claimMu): a
			// claim cannot land after shutdown began, when killing the
			// running runs frees their sessions for queued ones.
			m.claimMu.RLock()
			if m.closing.Load() {
				m.claimMu.RUnlock()
				s.release()
				return // shutting down: the run stays queued for the next process
			}
			m.mu.Lock()
			freed := m.freed
			m.mu.Unlock()
			woke := m.st.Wake(store.TopicRuns) // the session's turn may end in another process
			var run *store.Run
			err := lifecycleFault("claim", id)
			if err == nil {
				run, err = m.st.ClaimRunFor(context.WithoutCancel(runCtx), id, m.instance, m.pid, startInput)
			}
			m.claimMu.RUnlock()
			if err == nil && run != nil {
				// The slot bounds concurrent model turns: it is given back
				// (or passed on) when the turn returns, so the next run
				// starts while this one's outcome waits for the writer.
				m.execute(runCtx, id, ar, s, run)
				s.release()
				m.released()
				return
			}
			s.release()
			if err != nil {
				m.rt.log.Error("claim run", "run", id, "err", err)
			}
			// Only a run known not to be queued any more is let go: this
			// process owns the queued run and nobody else schedules it while
			// it lives (its heartbeat keeps recovery away), so giving up on
			// a failed claim or read would leave the run queued for ever.
			var r *store.Run
			gerr := lifecycleFault("state", id)
			if gerr == nil {
				r, gerr = m.st.GetRun(context.WithoutCancel(runCtx), id)
			}
			switch {
			case errors.Is(gerr, store.ErrNotFound):
				return // the row is gone (its session was deleted)
			case gerr != nil:
				m.rt.log.Error("read a queued run's state (trying again)", "run", id, "err", gerr)
			case r.State != store.RunQueued:
				return // killed before it started, or claimed elsewhere: never run twice
			}
			// Its session is busy with another turn (or the store failed):
			// wait for a local run to end, a run's end in another process
			// (PostgreSQL), or poll.
			if busyWaitHook != nil {
				busyWaitHook(id)
			}
			select {
			case <-freed:
			case <-woke:
			case <-time.After(remotePoll):
			case <-runCtx.Done():
				return
			}
		}
	}()
}

// startInput moves a queued turn's message (runOptions.Input of a send or
// cron turn) into the transcript in the claim's own transaction, so the
// message a sender was told was accepted is in the session from the moment
// its turn starts, even if this process dies right after claiming it.
// Spawned children's tasks were written with the run; their Input is empty.
func startInput(options json.RawMessage) ([]store.Message, json.RawMessage, error) {
	// Most runs (every spawn) have no input: find out without decoding
	// the caller's policy layers.
	var in struct {
		Input string `json:"input"`
	}
	if err := json.Unmarshal(options, &in); err != nil || in.Input == "" {
		return nil, nil, nil // unreadable options fail in execute, with a note
	}
	var opts runOptions
	if err := json.Unmarshal(options, &opts); err != nil || opts.Input == "" {
		return nil, nil, nil
	}
	role, trust := opts.InputRole, opts.InputTrust
	if role == "" {
		role = store.RoleUser
	}
	if trust == "" {
		trust = store.TrustUser
	}
	msg := store.Message{SessionKey: opts.Caller.Key, Role: role, Trust: trust, Content: store.Content{Text: opts.Input}}
	opts.Input = ""
	b, err := json.Marshal(opts)
	if err != nil {
		return nil, nil, err
	}
	return []store.Message{msg}, b, nil
}
