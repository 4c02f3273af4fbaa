package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sessionplane/sessionplane/policy"
)

// Me is who the dashboard shows data for.
type Me struct {
	Key     string   `json:"key"`
	AgentID string   `json:"agentId"`
	Presets []string `json:"presets"`
}

// serveAPI answers the JSON API the page uses:
//
//	api/me                                  the viewer
//	api/sessions?q=&kind=&status=&archived= the sessions list
//	api/search?q=                           sessions_search
//	api/tree                                the run tree
//	api/session?key=&after=                 a transcript (after: only newer messages)
//	api/stats                               cost and activity
func (u *UI) serveAPI(w http.ResponseWriter, r *http.Request, c policy.Caller, name string) {
	ctx := r.Context()
	q := r.URL.Query()
	var v any
	var err error
	switch name {
	case "me":
		me := Me{Key: c.Key, AgentID: c.AgentID, Presets: []string{}}
		for _, l := range c.Layers {
			me.Presets = append(me.Presets, l.Name)
		}
		v = me
	case "sessions":
		v, err = u.sessionsView(ctx, c, sessionsQuery(q.Get))
	case "search":
		v, err = u.search(ctx, c, q.Get("q"))
	case "tree":
		v, err = u.treeView(ctx, c)
	case "session":
		after := int64(-1)
		if a := q.Get("after"); a != "" {
			if after, err = strconv.ParseInt(a, 10, 64); err != nil || after < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "after: want a message seq (0 or more)"})
				return
			}
		}
		v, err = u.transcriptView(ctx, c, q.Get("key"), after)
	case "stats":
		v, err = u.statsView(ctx, c)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such API: " + name})
		return
	}
	if err != nil {
		status, msg := u.errorStatus(err)
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	if st, ok := v.(stamper); ok {
		st.stamp(u.opts.Now().UnixMilli())
	}
	writeJSON(w, http.StatusOK, v)
}

func sessionsQuery(get func(string) string) SessionsQuery {
	return SessionsQuery{Text: get("q"), Kind: get("kind"), Status: get("status"), Archived: get("archived") == "1" || get("archived") == "true"}
}

// errorStatus maps a view's error to a status and a message the viewer may
// read (internal errors are logged, not shown).
func (u *UI) errorStatus(err error) (int, string) {
	var fb *errForbidden
	switch {
	case errors.As(err, &fb):
		return http.StatusForbidden, fb.msg
	case errors.Is(err, errNotVisible):
		return http.StatusNotFound, err.Error()
	default:
		u.log.Error("ui: view failed", "err", err)
		return http.StatusInternalServerError, "the dashboard could not read the database (see the server log)"
	}
}

// serveEvents is a Server-Sent Events stream of one view:
//
//	events?view=sessions&q=&kind=&status=&archived=
//	events?view=tree
//	events?view=stats
//	events?view=session&key=K
//
// It sends the view at once ("event: view"), then again whenever the
// database changed and the view (as this viewer sees it) differs from what
// was last sent; a transcript sends only the messages after the last one
// sent. A view that fails sends "event: failure" with the message and
// ends the stream. Idle streams get a comment line every Keepalive.
func (u *UI) serveEvents(w http.ResponseWriter, r *http.Request, c policy.Caller) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported by this server", http.StatusInternalServerError)
		return
	}
	q := r.URL.Query()
	var compute func(ctx context.Context) (any, error)
	switch view := q.Get("view"); view {
	// Views read with several queries; they are read again when a commit
	// landed in between (UI.consistent). The session view keeps its place
	// in the transcript between reads, so it is not read twice.
	case "sessions":
		sq := sessionsQuery(q.Get)
		compute = func(ctx context.Context) (any, error) {
			return u.consistent(ctx, func(ctx context.Context) (any, error) { return u.sessionsView(ctx, c, sq) })
		}
	case "tree":
		compute = func(ctx context.Context) (any, error) {
			return u.consistent(ctx, func(ctx context.Context) (any, error) { return u.treeView(ctx, c) })
		}
	case "stats":
		compute = func(ctx context.Context) (any, error) {
			return u.consistent(ctx, func(ctx context.Context) (any, error) { return u.statsView(ctx, c) })
		}
	case "session":
		key := q.Get("key")
		last := int64(-1)
		var lastHead []byte
		compute = func(ctx context.Context) (any, error) {
			v, err := u.transcriptView(ctx, c, key, last)
			if err != nil {
				return nil, err
			}
			if n := len(v.Messages); n > 0 {
				last = v.Messages[n-1].Seq
			} else if last < 0 {
				last = 0
			}
			// Nothing new and the same header: nothing to send.
			head, _ := json.Marshal([]any{v.Session, v.Runs, v.Children})
			if len(v.Messages) == 0 && !v.Reset && bytes.Equal(head, lastHead) {
				return nil, nil
			}
			lastHead = head
			return v, nil
		}
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("view %q: use sessions, tree, stats or session", view)})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()

	ctx := r.Context()
	var lastSent []byte
	keep := time.NewTicker(u.opts.Keepalive)
	defer keep.Stop()
	for {
		changed := u.changes() // taken before reading, so no change is missed
		v, err := compute(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			_, msg := u.errorStatus(err)
			b, _ := json.Marshal(map[string]string{"error": msg})
			fmt.Fprintf(w, "event: failure\ndata: %s\n\n", b)
			fl.Flush()
			return
		}
		if v != nil {
			b, err := json.Marshal(v)
			if err != nil {
				u.log.Error("ui: encode view", "err", err)
				return
			}
			if !bytes.Equal(b, lastSent) || q.Get("view") == "session" {
				lastSent = b
				if st, ok := v.(stamper); ok {
					st.stamp(u.opts.Now().UnixMilli())
					b, _ = json.Marshal(v)
				}
				if _, err := fmt.Fprintf(w, "event: view\ndata: %s\n\n", b); err != nil {
					return
				}
				fl.Flush()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-u.ctx.Done():
			return
		case <-changed:
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return
			}
			fl.Flush()
			// A keepalive tick also recomputes: a runtime shown as
			// running is refreshed by the page itself, but a view whose
			// change the marker missed (none known) would be caught here.
		}
	}
}
