package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"

	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// owner is a principal of this process with the MCP connections that act
// for it. Principals are keyed by their own session: two principals with
// the same own session have the same agent and preset (addPrincipal
// refuses anything else), so they are one owner.
type owner struct {
	p      httpauth.Principal
	caller policy.Caller

	ensureMu sync.Mutex
	ensured  bool

	mu       sync.Mutex
	conns    map[string]*conn // by MCP session id
	last     server.ClientSession
	seenSeq  int64 // the own session's seq the connections were last told about
	seenInit bool
}

// conn is one MCP connection (a stdio stream, an HTTP Mcp-Session-Id).
type conn struct {
	sess server.ClientSession
	subs map[string]string // resources/subscribe: uri → state fingerprint
	// http: an HTTP session, which hears notifications between requests
	// only through a GET stream open on this instance.
	http bool
}

// addPrincipal registers p (idempotent); a principal whose own session is
// already owned by one with another agent or preset is refused.
func (s *Server) addPrincipal(p httpauth.Principal) (*owner, error) {
	s.ownersMu.Lock()
	defer s.ownersMu.Unlock()
	if o, ok := s.owners[p.SessionKey]; ok {
		if o.p.AgentID != p.AgentID || o.p.Preset != p.Preset {
			return nil, fmt.Errorf("principal %s (agent %s, preset %q) and principal %s (agent %s, preset %q) would share the own session %s: principals whose policies differ never share one (set another session for one of them)",
				p.Name, p.AgentID, p.Preset, o.p.Name, o.p.AgentID, o.p.Preset, p.SessionKey)
		}
		return o, nil
	}
	c, err := p.Caller(s.reg.Env().Policy)
	if err != nil {
		return nil, err
	}
	o := &owner{p: p, caller: c, conns: map[string]*conn{}}
	s.owners[p.SessionKey] = o
	return o, nil
}

// AddPrincipals registers the principals an HTTP authenticator may name,
// so that a conflict is found at start, not at the first request; they
// replace the principal of Options as the ones this process serves.
func (s *Server) AddPrincipals(ps []httpauth.Principal) error {
	var served []*owner
	for _, p := range ps {
		o, err := s.addPrincipal(p)
		if err != nil {
			return err
		}
		if !slices.Contains(served, o) {
			served = append(served, o)
		}
	}
	s.ownersMu.Lock()
	s.served = served
	s.ownersMu.Unlock()
	return nil
}

// ownerOf is the principal of the connection making the request in ctx:
// the authenticated HTTP principal, else the principal of Options.
func (s *Server) ownerOf(ctx context.Context) (*owner, error) {
	if p, ok := httpauth.FromContext(ctx); ok {
		return s.addPrincipal(p)
	}
	return s.def, nil
}

// callerOf is the policy identity of the request's principal, once its
// own session is ensured; an error (a principal that cannot be resolved,
// an own session refused) fails closed: the caller always sees its own
// session, so a refused one must not be acted as at all.
func (s *Server) callerOf(ctx context.Context) (policy.Caller, *owner, error) {
	o, err := s.ownerOf(ctx)
	if err != nil {
		return policy.Caller{}, nil, err
	}
	if err := o.ensure(ctx, s.reg.Env().Store, s.log); err != nil {
		return policy.Caller{}, nil, fmt.Errorf("this connection's own session is unavailable: %w", err)
	}
	return o.caller, o, nil
}

// ownerList returns every owner that has at least one connection.
func (s *Server) ownerList() []*owner {
	s.ownersMu.Lock()
	defer s.ownersMu.Unlock()
	out := make([]*owner, 0, len(s.owners))
	for _, o := range s.owners {
		o.mu.Lock()
		n := len(o.conns)
		o.mu.Unlock()
		if n > 0 {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].caller.Key < out[j].caller.Key })
	return out
}

// owns returns the owner of session key, if it is a principal of this process.
func (s *Server) owns(key string) (*owner, bool) {
	s.ownersMu.Lock()
	defer s.ownersMu.Unlock()
	o, ok := s.owners[key]
	return o, ok
}

// forgetConn drops an MCP session that ended (DELETE, expiry, EOF).
func (s *Server) forgetConn(id string) {
	s.ownersMu.Lock()
	owners := make([]*owner, 0, len(s.owners))
	for _, o := range s.owners {
		owners = append(owners, o)
	}
	s.ownersMu.Unlock()
	for _, o := range owners {
		o.mu.Lock()
		delete(o.conns, id)
		if o.last != nil && o.last.SessionID() == id {
			o.last = nil
			for _, c := range o.conns {
				o.last = c.sess
			}
		}
		o.mu.Unlock()
	}
}

// ensure creates the principal's own session on first contact, with kind
// main (sessions_send to it delivers, no model runs there), and refuses a
// session that is not a client's own session or was made by a principal
// with another policy: "a caller always sees its own session" must never
// show it someone else's content.
func (o *owner) ensure(ctx context.Context, st *store.Store, log *slog.Logger) error {
	o.ensureMu.Lock()
	defer o.ensureMu.Unlock()
	if o.ensured {
		return nil
	}
	want := presetOf(o.caller)
	// Read first: the session exists at every start but the first, and
	// EnsureSession would leave it as it is (INSERT ... DO NOTHING) after
	// a write transaction on the initialize reply's path.
	sess, err := st.GetSession(context.WithoutCancel(ctx), o.caller.Key)
	if errors.Is(err, store.ErrNotFound) {
		sess, err = st.EnsureSession(context.WithoutCancel(ctx), store.Session{
			Key: o.caller.Key, AgentID: o.caller.AgentID, Kind: store.KindMain, Label: "MCP client", Status: "active", Preset: want,
		})
	}
	if err != nil {
		return err
	}
	if sess.Kind != store.KindMain || sess.AgentID != o.caller.AgentID {
		return fmt.Errorf("session %s already exists as a %s session of agent %s, not an MCP client's own session: choose another with --session or [mcp] session", o.caller.Key, sess.Kind, sess.AgentID)
	}
	if sess.Preset != want {
		// agent:<a>:main made by the previous rule (every preset shared it)
		// belongs to the unrestricted principal of a under the new one.
		legacy := o.p.Preset == "" && o.caller.Key == "agent:"+o.caller.AgentID+":main"
		if !legacy {
			return fmt.Errorf("session %s is the own session of a principal with preset %q, and this principal has preset %q: principals whose policies differ never share a session (choose another with --session or [mcp] session)", o.caller.Key, sess.Preset, want)
		}
		log.Warn("own session was created under another preset (before principals had their own sessions); it is the unrestricted client's", "session", o.caller.Key, "stored_preset", sess.Preset)
	}
	o.ensured = true
	return nil
}

// remember records the connection of the request in ctx as one of o's,
// and where the own session stands when it first connects: later
// deliveries are news to it.
func (o *owner) remember(ctx context.Context) {
	sess := server.ClientSessionFromContext(ctx)
	if sess == nil || sess.SessionID() == "" { // a 2026-07-28 HTTP request: no session to notify
		return
	}
	_, http := httpauth.FromContext(ctx)
	o.rememberSession(sess, http)
}

// rememberSession records sess as one of o's connections.
func (o *owner) rememberSession(sess server.ClientSession, http bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.conns[sess.SessionID()]; !ok {
		o.conns[sess.SessionID()] = &conn{sess: sess, subs: map[string]string{}, http: http}
	}
	o.last = sess
}

// connList returns o's connections.
func (o *owner) connList() []*conn {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]*conn, 0, len(o.conns))
	for _, c := range o.conns {
		out = append(out, c)
	}
	return out
}

// pushConns returns the connections of o that hear a notification sent
// now: every stdio or in-process one, and the HTTP sessions with a GET
// stream open on this instance (listening, nil when this process serves
// no HTTP). A notice for an HTTP client listening on another instance is
// left to that instance, which finds the same durable rows.
func (s *Server) pushConns(o *owner) []*conn {
	listening := s.listeningFunc()
	all := o.connList()
	out := all[:0]
	for _, c := range all {
		if !c.http || (listening != nil && listening(c.sess.SessionID())) {
			out = append(out, c)
		}
	}
	return out
}

// setListening tells the notifier which HTTP sessions listen here.
func (s *Server) setListening(f func(id string) bool) {
	s.ownersMu.Lock()
	s.listening = f
	s.ownersMu.Unlock()
}

func (s *Server) listeningFunc() func(string) bool {
	s.ownersMu.Lock()
	defer s.ownersMu.Unlock()
	return s.listening
}

func (o *owner) lastSession() server.ClientSession {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// markSeen records, once, where the own session stands.
func (o *owner) markSeen(ctx context.Context, st *store.Store) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seenInit {
		return
	}
	if cur, err := st.GetSession(context.WithoutCancel(ctx), o.caller.Key); err == nil {
		o.seenSeq, o.seenInit = int64(cur.MessageCount), true
	}
}
