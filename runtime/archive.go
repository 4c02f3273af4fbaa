package runtime

import (
	"context"
)

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
