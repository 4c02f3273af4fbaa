package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// heartbeat keeps this process and its running runs alive in the store.
// It is a loop of its own, doing nothing else, so that the maintenance
// work (whose writes may wait on a busy database) never delays it: a
// heartbeat late by stale_seconds makes the other hosts take this one for
// dead.
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
		ctx, cancel := context.WithTimeout(m.ctx, m.stale)
		if err := m.st.Heartbeat(ctx, m.instance); err != nil {
			m.rt.log.Warn("heartbeat", "err", err)
		}
		cancel()
	}
}

// maintain notices kills made by other processes, polls their announces,
// recovers runs of processes that died, archives finished child sessions,
// expires parked approvals and keeps SQLite's -wal file bounded, every
// heartbeat interval.
func (m *Manager) maintain() {
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
		m.noticeRemoteKills(ctx)
		if err := m.st.PollAnnounces(ctx); err != nil {
			m.rt.log.Warn("poll announces", "err", err)
		}
		if err := m.recover(ctx); err != nil {
			m.rt.log.Warn("recover runs", "err", err)
		}
		m.sweepArchive(ctx)
		m.sweepApprovals(ctx)
		if _, err := m.st.CheckpointWAL(ctx); err != nil {
			m.rt.log.Warn("checkpoint the WAL", "err", err)
		}
		m.mu.Lock()
		n := m.notify
		m.mu.Unlock()
		if n != nil {
			n("") // poll: announces written by other processes
		}
		cancel()
	}
}

// watchRemote reacts at once to what other processes commit (PostgreSQL
// LISTEN/NOTIFY) instead of at the next heartbeat: a run of this process
// killed elsewhere is cancelled, and an announce written elsewhere is
// looked for. The maintenance loop still does both, as the fallback.
func (m *Manager) watchRemote() {
	defer m.wg.Done()
	for {
		runs, anns := m.st.Wake(store.TopicRuns), m.st.Wake(store.TopicAnnounces)
		select {
		case <-m.ctx.Done():
			return
		case <-runs:
		case <-anns:
		}
		// One commit often wakes both: handle each that woke.
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		if isClosed(runs) {
			m.noticeRemoteKills(ctx)
		}
		if isClosed(anns) {
			if err := m.st.PollAnnounces(ctx); err != nil {
				m.rt.log.Warn("poll announces", "err", err)
			} else {
				m.mu.Lock()
				n := m.notify
				m.mu.Unlock()
				if n != nil {
					n("") // announces written by other processes
				}
			}
		}
		cancel()
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
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

// recover handles runs owned by processes that are gone: a heartbeat older
// than [cluster] stale_seconds, or (for a process of this host id, which
// shares this pid space) a pid that is gone. Across host ids a pid says
// nothing, so only heartbeats count there. A running run becomes unknown
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
	hosts := map[string]string{}
	now := m.st.NowMS()
	for _, in := range insts {
		hosts[in.ID] = in.Host
		ok := now-in.HeartbeatAt < m.stale.Milliseconds()
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
			if h := hosts[r.OwnerInstance]; h != "" && h != m.host {
				note = fmt.Sprintf("the process running it (host %s, pid %d) stopped before it finished; its outcome is unknown (the transcript keeps what it did)", h, r.OwnerPID)
			}
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
				m.rt.log.Info("run left running by a stopped process marked unknown", "run", r.ID, "pid", r.OwnerPID, "host", hosts[r.OwnerInstance])
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
