package runtime

import (
	"context"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// WaitRuns blocks until every run in ids has ended (first false) or at least
// one has (first true), d passes, or ctx ends, and returns the runs' current
// records in the order of ids either way. A run ending in this process
// wakes it at once, one ending in another process on PostgreSQL too
// (LISTEN/NOTIFY); runs of other processes are polled every remotePoll.
// progress, when set, is told how many have ended each time that grows.
func (m *Manager) WaitRuns(ctx context.Context, ids []string, first bool, d time.Duration, progress func(ended, total int)) ([]*store.Run, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(remotePoll)
	defer tick.Stop()
	last := -1
	for {
		m.mu.Lock()
		freed := m.freed // closed when a local run ends
		m.mu.Unlock()
		woke := m.st.Wake(store.TopicRuns) // closed when a run ends anywhere (PostgreSQL)
		states, err := m.st.RunStates(ctx, ids)
		if err != nil {
			return nil, err
		}
		ended := 0
		for _, id := range ids {
			if store.Terminal(states[id]) {
				ended++
			}
		}
		if ended != last && progress != nil {
			progress(ended, len(ids))
		}
		last = ended
		if ended == len(ids) || first && ended > 0 {
			return m.st.GetRuns(ctx, ids)
		}
		select {
		case <-freed:
		case <-woke:
		case <-tick.C:
		case <-deadline.C:
			return m.st.GetRuns(context.WithoutCancel(ctx), ids)
		case <-ctx.Done():
			return m.st.GetRuns(context.WithoutCancel(ctx), ids)
		}
	}
}
