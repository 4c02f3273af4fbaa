package runtime

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

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
		kids, err := m.st.ListRuns(ctx, store.RunFilter{Requesters: []string{run.ChildKey}, States: []string{store.RunQueued, store.RunRunning, store.RunInputRequired}})
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
	tick := time.NewTicker(remotePoll)
	defer tick.Stop()
	for {
		m.mu.Lock()
		ar := m.active[id]
		m.mu.Unlock()
		woke := m.st.Wake(store.TopicRuns) // a run ended in another process (PostgreSQL)
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
		case <-woke:
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

// steerEvery is the minimum interval between two steers of one child.
const steerEvery = 5 * time.Second

// ErrSteerRate reports a steer refused by the rate limit.
func ErrSteerRate() error { return errSteerRate }
