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

func (m *Manager) laneFor(kind string) chan struct{} {
	if kind == KindSpawn || kind == "" {
		return m.lane
	}
	return m.nested
}

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
func (m *Manager) takeSlot(kind string) (release func(), ok bool) {
	lane := m.laneFor(kind)
	m.claimMu.RLock()
	if m.closing.Load() {
		m.claimMu.RUnlock()
		return nil, false
	}
	select {
	case lane <- struct{}{}:
	default:
		m.claimMu.RUnlock()
		return nil, false
	}
	var once sync.Once
	return func() { once.Do(func() { <-lane }) }, true
}

// startClaimed runs a run already claimed for this process (CreateRun in
// state running), tracked by m.track, holding the lane slot release gives
// back.
func (m *Manager) startClaimed(runCtx context.Context, ar *activeRun, done func(), id string, release func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer done()
		m.execute(runCtx, id, ar, release)
		release()
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

func (m *Manager) scheduleKind(id, kind string) {
	runCtx, ar, done := m.track(id)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer done()
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
			// The check and the claim are one step for Close (claimMu): a
			// claim cannot land after shutdown began, when killing the
			// running runs frees their sessions for queued ones.
			m.claimMu.RLock()
			if m.closing.Load() {
				m.claimMu.RUnlock()
				<-lane
				return // shutting down: the run stays queued for the next process
			}
			m.mu.Lock()
			freed := m.freed
			m.mu.Unlock()
			woke := m.st.Wake(store.TopicRuns) // the session's turn may end in another process
			ok, err := false, lifecycleFault("claim", id)
			if err == nil {
				ok, err = m.st.ClaimRunWith(context.WithoutCancel(runCtx), id, m.instance, m.pid, startInput)
			}
			m.claimMu.RUnlock()
			if err == nil && ok {
				// The slot bounds concurrent model turns: it is given back
				// when the turn returns, so the next run starts while this
				// one's outcome waits for the writer.
				var once sync.Once
				release := func() { once.Do(func() { <-lane }) }
				m.execute(runCtx, id, ar, release)
				release()
				m.released()
				return
			}
			<-lane
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
	var opts runOptions
	if err := json.Unmarshal(options, &opts); err != nil || opts.Input == "" {
		return nil, nil, nil // unreadable options fail in execute, with a note
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
