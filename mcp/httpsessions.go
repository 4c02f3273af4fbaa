package mcp

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/mcp/httpauth"
)

// httpSessions is the table of live Streamable HTTP sessions
// (Mcp-Session-Id): who each belongs to and when it was last used. Only ids
// it issued, not deleted and not idle past the limit, are served, and only
// to the principal that created them; the number of live sessions is
// capped. It is mcp-go's SessionIdManager (through the resolver below), so
// ids are issued and terminated by the transport itself.
type httpSessions struct {
	idle time.Duration
	max  int
	now  func() time.Time

	mu       sync.Mutex
	byID     map[string]*httpSession
	reserved int // initialize requests in flight that were given a slot
}

type httpSession struct {
	p       httpauth.Principal
	last    time.Time
	streams int // GET streams open: a listening client is not idle
}

var (
	errSessionUnknown = errors.New("unknown session")
	errSessionExpired = errors.New("session expired")
)

func newHTTPSessions(idle time.Duration, max int, now func() time.Time) *httpSessions {
	return &httpSessions{idle: idle, max: max, now: now, byID: map[string]*httpSession{}}
}

// reserve takes a slot for an initialize about to run; false when the cap
// is reached. release gives the slot back once the request is over
// (Generate has then recorded the session, if any).
func (g *httpSessions) reserve() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.byID)+g.reserved >= g.max {
		return false
	}
	g.reserved++
	return true
}

func (g *httpSessions) release() {
	g.mu.Lock()
	g.reserved--
	g.mu.Unlock()
}

// check reports whether id is a live session of p, and touches it.
func (g *httpSessions) check(id string, p httpauth.Principal) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.byID[id]
	if !ok || s.p != p {
		return errSessionUnknown // another principal's id is as unknown as a made-up one
	}
	now := g.now()
	if s.streams == 0 && now.Sub(s.last) >= g.idle {
		return errSessionExpired
	}
	s.last = now
	return nil
}

// stream marks a GET stream of id open until the returned func is called
// (which counts as a use).
func (g *httpSessions) stream(id string) func() {
	g.mu.Lock()
	if s, ok := g.byID[id]; ok {
		s.streams++
	}
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		if s, ok := g.byID[id]; ok {
			s.streams--
			s.last = g.now()
		}
		g.mu.Unlock()
	}
}

// expired lists the sessions idle past the limit.
func (g *httpSessions) expired() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	var out []string
	for id, s := range g.byID {
		if s.streams == 0 && now.Sub(s.last) >= g.idle {
			out = append(out, id)
		}
	}
	return out
}

func (g *httpSessions) remove(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.byID[id]
	delete(g.byID, id)
	return ok
}

func (g *httpSessions) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byID)
}

// ResolveSessionIdManager binds the manager to the request's principal; a
// nil request (mcp-go's shutdown) gets one that can only terminate.
func (g *httpSessions) ResolveSessionIdManager(r *http.Request) server.SessionIdManager {
	m := &sessionIDs{g: g}
	if r != nil {
		m.p, m.ok = httpauth.FromContext(r.Context())
	}
	return m
}

// sessionIDs is mcp-go's SessionIdManager for one principal.
type sessionIDs struct {
	g  *httpSessions
	p  httpauth.Principal
	ok bool
}

// Generate issues a session id to the principal (its slot was reserved
// by the initialize request).
func (m *sessionIDs) Generate() string {
	id := "mcp-session-" + uuid.NewString()
	if !m.ok {
		return id // never served: check finds no entry
	}
	m.g.mu.Lock()
	m.g.byID[id] = &httpSession{p: m.p, last: m.g.now()}
	m.g.mu.Unlock()
	return id
}

// Validate accepts a live session of the principal only.
func (m *sessionIDs) Validate(id string) (bool, error) {
	if !m.ok {
		return false, errSessionUnknown
	}
	return false, m.g.check(id, m.p)
}

// Terminate forgets the session (the gate has checked it is the principal's).
func (m *sessionIDs) Terminate(id string) (bool, error) {
	m.g.remove(id)
	return false, nil
}
