package runtime

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// ServedDiffers reports whether the model a provider says answered
// (served) is another model than the one requested (name, the
// provider-side name sent in the request). A served name that extends the
// requested one with a version ("gpt-4o" → "gpt-4o-2024-08-06",
// "qwen2.5" → "qwen2.5:7b", "x" → "x:latest") is the same model; any other
// suffix ("gpt-4o" → "gpt-4o-mini") is another one. An empty served name
// says nothing and never differs.
func ServedDiffers(name, served string) bool {
	if served == "" || served == name {
		return false
	}
	for _, sep := range []string{"-", ":", "@"} {
		rest, ok := strings.CutPrefix(served, name+sep)
		if ok && (rest == "latest" || rest != "" && rest[0] >= '0' && rest[0] <= '9') {
			return false
		}
	}
	return true
}

// ModelServedWarning is the warning shown when a run's model differs from
// the one requested, or "" when it does not (or nothing was served yet).
// modelID is the [[models]] id requested; served what the provider named.
func (r *Runtime) ModelServedWarning(modelID, served string) string {
	if modelID == "" {
		return ""
	}
	name := modelID
	if m, ok := r.model(modelID); ok {
		name = m.Name
	}
	if !ServedDiffers(name, served) {
		return ""
	}
	return fmt.Sprintf("model %s was requested (sent as %q) but the provider says %q answered", modelID, name, served)
}

// recordServed logs a warning when the served model differs from the one
// requested and then records it at once (spawn_status shows the difference
// while the run goes on); a served model that matches is recorded with the
// run's end, in the same transaction, at no extra write. A failed write is
// logged, never fatal to the run.
func (r *Runtime) recordServed(ctx context.Context, t Turn, served string) {
	if !ServedDiffers(t.Model.Name, served) {
		return
	}
	r.log.Warn("the provider answered with another model than requested", "model", t.Model.ID,
		"requested", t.Model.Name, "served", served, "session", t.SessionKey, "run", t.Caller.RunID)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.st.RecordModelServed(wctx, t.Caller.RunID, t.SessionKey, served); err != nil {
		r.log.Warn("record the model served", "session", t.SessionKey, "run", t.Caller.RunID, "err", err)
	}
}
