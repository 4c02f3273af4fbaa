package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// httpSessions is the table of Streamable HTTP sessions (Mcp-Session-Id).
// The sessions live in the store (store.HTTPSession), shared by every
// `sessionplane --http` instance on the database: any instance serves a
// live id issued by another one to the same principal, a DELETE on one
// ends it on all, and the cap counts every instance's sessions. Only ids
// issued, not deleted and not idle past the limit are served, and only to
// the principal that created them.
//
// What stays in memory is this instance's part: the sessions it has
// served (so that their mcp-go state is dropped when the row goes,
// whichever instance removed it) and its open GET streams (a listening
// client is not idle: the sweeper keeps its row fresh). It is mcp-go's
// SessionIdManager (through the resolver below).
type httpSessions struct {
	st   *store.Store
	idle time.Duration
	max  int
	now  func() time.Time
	// touchEvery is how stale last_seen may get before a request writes
	// it again: one write per session per touchEvery, not one per request.
	touchEvery time.Duration

	mu   sync.Mutex
	byID map[string]*httpSession // the sessions this instance has served
	next int                     // stream handles
}

type httpSession struct {
	p       httpauth.Principal
	streams map[int]context.CancelFunc // GET streams open here, ended when the session ends
}

var (
	errSessionUnknown = errors.New("unknown session")
	errSessionExpired = errors.New("session expired")
	errSessionCap     = errors.New("too many sessions")
)

func newHTTPSessions(st *store.Store, idle time.Duration, max int, now func() time.Time) *httpSessions {
	return &httpSessions{st: st, idle: idle, max: max, now: now, touchEvery: min(idle/8, time.Minute), byID: map[string]*httpSession{}}
}

func (g *httpSessions) ms() int64 { return g.now().UnixMilli() }

// liveAfter is the oldest last_seen of a session not idle past the limit.
func (g *httpSessions) liveAfter() int64 { return g.ms() - g.idle.Milliseconds() + 1 }

// initInfo is what an initialize request says of its client, kept with
// the session so that another instance can restore it.
type initInfo struct {
	Params struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
	} `json:"params"`
}

// maxClientJSON bounds the client info and capabilities kept per session;
// larger ones are not kept (another instance then sees none).
const maxClientJSON = 64 << 10

// create issues a session id to p for the initialize request body, under
// the cap (errSessionCap when it is reached, across every instance).
func (g *httpSessions) create(ctx context.Context, p httpauth.Principal, body []byte) (string, error) {
	var in initInfo
	_ = json.Unmarshal(body, &in) // mcp-go answers a malformed initialize itself
	kept := func(raw json.RawMessage) string {
		if len(raw) > maxClientJSON {
			return ""
		}
		return string(raw)
	}
	now := g.ms()
	h := store.HTTPSession{ID: "mcp-session-" + uuid.NewString(), Principal: p.Name, AgentID: p.AgentID, Preset: p.Preset, OwnSession: p.SessionKey,
		ProtocolVersion: mcp.NegotiateLegacyVersion(in.Params.ProtocolVersion), ClientInfo: kept(in.Params.ClientInfo), Capabilities: kept(in.Params.Capabilities),
		CreatedAt: now, LastSeen: now}
	ok, err := g.st.CreateHTTPSession(context.WithoutCancel(ctx), h, g.max, g.liveAfter())
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errSessionCap
	}
	g.mu.Lock()
	g.byID[h.ID] = &httpSession{p: p}
	g.mu.Unlock()
	return h.ID, nil
}

// owns reports whether the stored session row belongs to p.
func owns(h store.HTTPSession, p httpauth.Principal) bool {
	return h.Principal == p.Name && h.AgentID == p.AgentID && h.Preset == p.Preset && h.OwnSession == p.SessionKey
}

// check returns session id when it is live and p's (whichever instance
// issued it), and touches it; this instance then serves it.
func (g *httpSessions) check(ctx context.Context, id string, p httpauth.Principal) (store.HTTPSession, error) {
	h, err := g.st.HTTPSessionByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !owns(h, p)) {
		return h, errSessionUnknown // another principal's id is as unknown as a made-up one
	}
	if err != nil {
		return h, err
	}
	now := g.ms()
	g.mu.Lock()
	s, ok := g.byID[id]
	if !ok {
		s = &httpSession{p: p}
		g.byID[id] = s
	}
	streaming := len(s.streams) > 0
	g.mu.Unlock()
	if !streaming && now-h.LastSeen >= g.idle.Milliseconds() {
		return h, errSessionExpired
	}
	if now-h.LastSeen >= g.touchEvery.Milliseconds() {
		if err := g.st.TouchHTTPSessions(context.WithoutCancel(ctx), []string{id}, now); err != nil {
			return h, err
		}
	}
	return h, nil
}

// stream marks a GET stream of id open until the returned func is called;
// cancel ends the stream when the session ends (on any instance).
func (g *httpSessions) stream(id string, cancel context.CancelFunc) func() {
	g.mu.Lock()
	s, ok := g.byID[id]
	if !ok {
		g.mu.Unlock()
		cancel()
		return func() {}
	}
	if s.streams == nil {
		s.streams = map[int]context.CancelFunc{}
	}
	g.next++
	n := g.next
	s.streams[n] = cancel
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		if s, ok := g.byID[id]; ok {
			delete(s.streams, n)
		}
		g.mu.Unlock()
		cancel()
		// The stream's end counts as a use.
		ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = g.st.TouchHTTPSessions(ctx, []string{id}, g.ms())
	}
}

// listening reports whether id has a GET stream open on this instance.
func (g *httpSessions) listening(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.byID[id]
	return ok && len(s.streams) > 0
}

// sweep keeps the sessions listening here fresh, deletes the sessions
// idle past the limit (any instance may: the row goes once), and returns
// the sessions this instance served that no longer exist — deleted or
// expired by any instance — after ending their GET streams here.
func (g *httpSessions) sweep(ctx context.Context) ([]string, error) {
	now := g.ms()
	g.mu.Lock()
	var streaming []string
	for id, s := range g.byID {
		if len(s.streams) > 0 {
			streaming = append(streaming, id)
		}
	}
	g.mu.Unlock()
	if err := g.st.TouchHTTPSessions(ctx, streaming, now); err != nil {
		return nil, err
	}
	if err := g.st.ExpireHTTPSessions(ctx, g.liveAfter()); err != nil {
		return nil, err
	}
	return g.gone(ctx)
}

// gone forgets, and returns, the sessions this instance served that no
// longer exist (deleted or expired by any instance), ending their GET
// streams here. It only reads the table.
func (g *httpSessions) gone(ctx context.Context) ([]string, error) {
	live, err := g.st.LiveHTTPSessions(ctx, g.liveAfter())
	if err != nil {
		return nil, err
	}
	alive := make(map[string]bool, len(live))
	for _, id := range live {
		alive[id] = true
	}
	var gone []string
	g.mu.Lock()
	for id := range g.byID {
		if !alive[id] {
			gone = append(gone, id)
		}
	}
	g.mu.Unlock()
	for _, id := range gone {
		g.forget(id)
	}
	return gone, nil
}

// forget drops this instance's part of session id: its entry and its GET
// streams. It reports whether there was one.
func (g *httpSessions) forget(id string) bool {
	g.mu.Lock()
	s, ok := g.byID[id]
	delete(g.byID, id)
	g.mu.Unlock()
	if ok {
		for _, cancel := range s.streams {
			cancel()
		}
	}
	return ok
}

// end deletes session id for every instance and forgets it here.
func (g *httpSessions) end(ctx context.Context, id string) error {
	g.forget(id)
	_, err := g.st.DeleteHTTPSession(context.WithoutCancel(ctx), id)
	return err
}

// count is the number of live sessions, on every instance.
func (g *httpSessions) count(ctx context.Context) (int, error) {
	live, err := g.st.LiveHTTPSessions(ctx, g.liveAfter())
	return len(live), err
}

// local is the number of sessions this instance holds state for.
func (g *httpSessions) local() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byID)
}

// issuedKey carries the id the gate issued for an initialize to Generate;
// checkedKey carries the session row the gate checked to Validate and to
// the context function that restores the client's state.
// forgetOnlyKey marks the internal DELETE that drops mcp-go's state of a
// session already ended.
type (
	issuedKey     struct{}
	checkedKey    struct{}
	forgetOnlyKey struct{}
)

// issued records whether mcp-go asked for the pre-issued id (otherwise
// the initialize was refused before a session began, and the row goes).
type issued struct {
	id   string
	used bool
}

// ResolveSessionIdManager binds the manager to the request's principal; a
// nil request (mcp-go's shutdown) or the internal DELETE of an ended
// session gets one that can only forget locally: an instance that stops
// leaves its sessions to the others.
func (g *httpSessions) ResolveSessionIdManager(r *http.Request) server.SessionIdManager {
	m := &sessionIDs{g: g}
	if r != nil && r.Context().Value(forgetOnlyKey{}) == nil {
		m.ctx = r.Context()
		m.p, m.ok = httpauth.FromContext(r.Context())
	}
	return m
}

// sessionIDs is mcp-go's SessionIdManager for one request.
type sessionIDs struct {
	g   *httpSessions
	ctx context.Context // nil: shutdown
	p   httpauth.Principal
	ok  bool
}

// Generate hands out the id the gate issued (and recorded, under the cap)
// for this initialize.
func (m *sessionIDs) Generate() string {
	if m.ctx != nil {
		if is, ok := m.ctx.Value(issuedKey{}).(*issued); ok {
			is.used = true
			return is.id
		}
	}
	return "mcp-session-unissued-" + uuid.NewString() // never served: no row has it
}

// Validate accepts a live session of the principal only (the gate checked
// it already for requests it let through).
func (m *sessionIDs) Validate(id string) (bool, error) {
	if m.ctx == nil || !m.ok {
		return false, errSessionUnknown
	}
	if h, ok := m.ctx.Value(checkedKey{}).(store.HTTPSession); ok && h.ID == id {
		return false, nil
	}
	_, err := m.g.check(m.ctx, id, m.p)
	return false, err
}

// Terminate ends the session: for every instance on a DELETE (the gate
// has checked it is the principal's), here only at shutdown.
func (m *sessionIDs) Terminate(id string) (bool, error) {
	if m.ctx == nil {
		m.g.forget(id)
		return false, nil
	}
	return false, m.g.end(m.ctx, id)
}
