package runtime

import (
	"fmt"
	"strings"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// announce builds the durable announce of a finished run.
func (m *Manager) announce(run *store.Run, sessionID string) *store.Announce {
	text := strings.TrimSpace(run.ResultText)
	silent := text == "NO_REPLY" || text == "ANNOUNCE_SKIP" || text == "REPLY_SKIP"
	body := AnnounceBody(run, sessionID)
	if silent {
		// The status stays (spawn_status, the requester's transcript); the
		// reply and the stats do not reach the requester.
		body = announceHeader(run) + " (" + text + ": nothing to report)"
	} else if w := m.rt.ModelServedWarning(run.Model, run.ModelServed); w != "" {
		body = strings.Replace(body, "\nStats: ", "\nWarning: "+w+"\nStats: ", 1)
	}
	return &store.Announce{RequesterKey: run.RequesterKey, Status: run.State, Silent: silent, Body: body}
}

func announceHeader(run *store.Run) string {
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
	return fmt.Sprintf("[announce] %s %q (run %s) finished: %s", what, name, run.ID, run.State)
}

// AnnounceBody renders an announce: status, the child's reply fenced as
// untrusted data, and the stats line.
func AnnounceBody(run *store.Run, sessionID string) string {
	var b strings.Builder
	b.WriteString(announceHeader(run) + "\n")
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

// StatsLine is the announce's stats line; it ends with the model requested
// and, once a provider named one, the model served.
func StatsLine(run *store.Run, sessionID string) string {
	dur := time.Duration(0)
	if run.EndedAt > 0 && run.StartedAt > 0 {
		dur = time.Duration(run.EndedAt-run.StartedAt) * time.Millisecond
	}
	line := fmt.Sprintf("Stats: runtime %s • tokens %s (in %s / out %s) • est $%.4f • sessionKey %s • sessionId %s • transcript session://%s",
		shortDuration(dur), HumanTokens(run.TokensIn+run.TokensOut), HumanTokens(run.TokensIn), HumanTokens(run.TokensOut), run.CostUSD,
		run.ChildKey, sessionID, run.ChildKey)
	if run.Model != "" {
		line += " • model " + run.Model
		if run.ModelServed != "" {
			line += " (served " + run.ModelServed + ")"
		}
	}
	return line
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
