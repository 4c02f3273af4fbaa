package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// HTTPOptions configure the Streamable HTTP transport.
type HTTPOptions struct {
	// Auth authenticates every request (required): a bearer token per
	// principal, or SourceNone for --http-no-auth.
	Auth *httpauth.Authenticator
	// AllowedOrigins are the browser origins served; a request with any
	// other Origin header gets 403.
	AllowedOrigins []string
	// IdleTimeout ends a session unused this long (default 30 min).
	IdleTimeout time.Duration
	// MaxSessions caps the live sessions (default 1000).
	MaxSessions int
	// Now is the clock of idle expiry (default time.Now; tests move it).
	Now func() time.Time
	// MaxBodyBytes bounds a request body (default 16 MiB).
	MaxBodyBytes int64
	// Mount adds other handlers beside /mcp, by path pattern (the
	// dashboard at /ui/). They authenticate themselves.
	Mount map[string]http.Handler
	// OnShutdown, when set, is called when the server starts shutting down,
	// before waiting for requests in flight (to end long-lived streams).
	OnShutdown func()
}

// HTTPHandler is the Streamable HTTP surface at /mcp: Origin check,
// bearer authentication, the session table, then mcp-go's transport. Its
// sweeper of idle sessions runs until Close.
type HTTPHandler struct {
	s        *Server
	mcp      *server.StreamableHTTPServer
	sessions *httpSessions
	handler  http.Handler
	maxBody  int64

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewHTTPHandler builds the handler; httpSrv (may be nil) is the server it
// is mounted on, shut down by Shutdown.
func (s *Server) NewHTTPHandler(opts HTTPOptions, httpSrv *http.Server) (*HTTPHandler, error) {
	if opts.Auth == nil {
		return nil, errors.New("HTTP: no authenticator")
	}
	if err := s.AddPrincipals(opts.Auth.Principals()); err != nil {
		return nil, fmt.Errorf("HTTP principals: %w", err)
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	h := &HTTPHandler{s: s, sessions: newHTTPSessions(s.reg.Env().Store, opts.IdleTimeout, opts.MaxSessions, opts.Now), maxBody: opts.MaxBodyBytes, stop: make(chan struct{})}
	s.setListening(h.sessions.listening)
	mopts := []server.StreamableHTTPOption{
		server.WithStreamableHTTPLogger(s.log),
		server.WithSessionIdManagerResolver(h.sessions),
		server.WithHTTPContextFunc(restoreClient),
	}
	if httpSrv != nil {
		mopts = append(mopts, server.WithStreamableHTTPServer(httpSrv))
	}
	h.mcp = server.NewStreamableHTTPServer(s.srv, mopts...)
	mux := http.NewServeMux()
	mux.Handle("/mcp", httpauth.CheckOrigin(opts.AllowedOrigins, opts.Auth.Middleware(http.HandlerFunc(h.gate))))
	for pattern, hd := range opts.Mount {
		mux.Handle(pattern, hd)
	}
	h.handler = mux
	h.wg.Add(1)
	go h.sweeper(max(min(opts.IdleTimeout/4, time.Minute), time.Second))
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.handler.ServeHTTP(w, r) }

// Sessions is the number of live HTTP sessions, on every instance on the
// database (-1 when the database cannot be read).
func (h *HTTPHandler) Sessions() int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := h.sessions.count(ctx)
	if err != nil {
		return -1
	}
	return n
}

// LocalSessions is the number of sessions this instance holds state for.
func (h *HTTPHandler) LocalSessions() int { return h.sessions.local() }

// Shutdown closes every session's streams and shuts the HTTP server down:
// requests in flight finish, bounded by ctx. It stops the sweeper and may
// be called more than once.
func (h *HTTPHandler) Shutdown(ctx context.Context) error {
	var err error
	h.once.Do(func() {
		close(h.stop)
		h.wg.Wait()
		err = h.mcp.Shutdown(ctx)
	})
	return err
}

// gate serves an authenticated request: an initialize is issued a session
// under the cap, any other request must name a live session of its
// principal — issued by this instance or by another on the same database
// (404 otherwise, as the Streamable HTTP transport specifies for an
// unknown or ended session).
func (h *HTTPHandler) gate(w http.ResponseWriter, r *http.Request) {
	p, _ := httpauth.FromContext(r.Context())
	sid := r.Header.Get(server.HeaderKeySessionID)
	init := false
	var body []byte
	if r.Method == http.MethodPost {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
		if err != nil {
			http.Error(w, fmt.Sprintf("413 request body too large or unreadable: %v (limit %d bytes)", err, h.maxBody), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var msg struct {
			Method string `json:"method"`
		}
		init = json.Unmarshal(body, &msg) == nil && msg.Method == "initialize"
	}
	switch {
	case init:
		id, err := h.sessions.create(r.Context(), p, body)
		switch {
		case errors.Is(err, errSessionCap):
			w.Header().Set("Retry-After", "60")
			http.Error(w, fmt.Sprintf("503 too many MCP sessions: the limit is %d live sessions across every instance on this database ([mcp.http] max_sessions); end unused ones with DELETE or wait for idle ones to expire ([mcp.http] session_idle_minutes)", h.sessions.max), http.StatusServiceUnavailable)
			return
		case err != nil:
			h.storeDown(w, err)
			return
		}
		is := &issued{id: id}
		r = r.WithContext(context.WithValue(r.Context(), issuedKey{}, is))
		defer func() {
			if !is.used { // refused before a session began: it was never handed out
				_ = h.sessions.end(r.Context(), id)
			}
		}()
	case sid != "":
		row, err := h.sessions.check(r.Context(), sid, p)
		switch {
		case errors.Is(err, errSessionExpired):
			h.expire(sid)
			http.Error(w, "404 session expired (idle past [mcp.http] session_idle_minutes): initialize a new one", http.StatusNotFound)
			return
		case errors.Is(err, errSessionUnknown):
			http.Error(w, "404 session not found: it was never issued, was deleted or expired; initialize a new one", http.StatusNotFound)
			return
		case err != nil:
			h.storeDown(w, err)
			return
		}
		ctx := context.WithValue(r.Context(), checkedKey{}, row)
		if r.Method == http.MethodGet {
			// The stream ends when the session does, on whichever
			// instance it is deleted or expires.
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer h.sessions.stream(sid, cancel)()
		}
		r = r.WithContext(ctx)
	case r.Method == http.MethodGet || r.Method == http.MethodDelete:
		http.Error(w, "400 Mcp-Session-Id header required: initialize first", http.StatusBadRequest)
		return
	}
	h.mcp.ServeHTTP(w, r)
}

// storeDown answers a request the session table could not be read or
// written for: the database is unreachable or failing (503, retry). The
// error is logged, not sent: it may name the database's host.
func (h *HTTPHandler) storeDown(w http.ResponseWriter, err error) {
	h.s.log.Error("HTTP session table: the database failed", "err", err)
	w.Header().Set("Retry-After", "5")
	http.Error(w, "503 the MCP session table is unavailable (a database error, logged by the server): retry shortly", http.StatusServiceUnavailable)
}

// restoreClient gives a session this instance did not initialize what
// initialize negotiated on the instance that did (client info,
// capabilities, protocol version): it is mcp-go's HTTP context function,
// run with the request's session in ctx.
func restoreClient(ctx context.Context, r *http.Request) context.Context {
	restoreSession(r.Context(), server.ClientSessionFromContext(ctx))
	return ctx
}

// restoreSession applies the session row the gate checked (in reqCtx) to
// sess, unless sess knows its client already (initialized here, or
// restored before).
func restoreSession(reqCtx context.Context, sess server.ClientSession) {
	row, ok := reqCtx.Value(checkedKey{}).(store.HTTPSession)
	if !ok || sess == nil || sess.SessionID() != row.ID {
		return
	}
	ci, ok := sess.(server.SessionWithClientInfo)
	if !ok || ci.GetClientInfo().Name != "" {
		return
	}
	var info mcp.Implementation
	if row.ClientInfo != "" && json.Unmarshal([]byte(row.ClientInfo), &info) == nil {
		ci.SetClientInfo(info)
	}
	var caps mcp.ClientCapabilities
	if row.Capabilities != "" && json.Unmarshal([]byte(row.Capabilities), &caps) == nil {
		ci.SetClientCapabilities(caps)
	}
	if v, ok := sess.(interface{ SetProtocolVersion(string) }); ok && row.ProtocolVersion != "" {
		v.SetProtocolVersion(row.ProtocolVersion)
	}
}

// expire ends a session idle past the limit: out of the table, then
// forgotten here.
func (h *HTTPHandler) expire(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.sessions.end(ctx, id); err != nil {
		h.s.log.Warn("HTTP session expiry", "session", id, "err", err)
	}
	h.s.log.Info("HTTP session expired", "session", id)
	h.dropLocal(id)
}

// dropLocal removes what this instance holds for a session that ended
// (here or on another instance): mcp-go's per-session state, through its
// DELETE path with a manager that only forgets, and the connection.
func (h *HTTPHandler) dropLocal(id string) {
	h.sessions.forget(id)
	req := httptest.NewRequestWithContext(context.WithValue(context.Background(), forgetOnlyKey{}, true), http.MethodDelete, "http://localhost/mcp", nil)
	req.Header.Set(server.HeaderKeySessionID, id)
	h.mcp.ServeHTTP(httptest.NewRecorder(), req)
	h.s.forgetConn(id)
}

// sweeper expires idle sessions every tick until Shutdown; on PostgreSQL
// a session ended on another instance also wakes it at once, to drop
// this instance's state of it (its GET streams end).
func (h *HTTPHandler) sweeper(every time.Duration) {
	defer h.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	st := h.s.reg.Env().Store
	for {
		ended := st.Wake(store.TopicHTTPSessions) // nil (never ready) on SQLite
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.Sweep()
		case <-ended:
			h.dropGone()
		}
	}
}

// Sweep keeps the sessions listening here alive, expires every session
// idle past the limit, and drops this instance's state of sessions that
// ended anywhere (the sweeper calls it; tests too, after moving the clock).
func (h *HTTPHandler) Sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gone, err := h.sessions.sweep(ctx)
	if err != nil {
		h.s.log.Warn("HTTP session sweep", "err", err)
	}
	for _, id := range gone {
		h.dropLocal(id)
	}
}

// dropGone drops this instance's state of sessions that ended elsewhere.
func (h *HTTPHandler) dropGone() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gone, err := h.sessions.gone(ctx)
	if err != nil {
		h.s.log.Warn("HTTP sessions ended elsewhere", "err", err)
	}
	for _, id := range gone {
		h.dropLocal(id)
	}
}

// ServeHTTP serves MCP as Streamable HTTP on addr at /mcp until ctx ends,
// then shuts down gracefully: requests in flight finish (at most 10 s).
// A non-loopback address is served only with [[mcp.http.tokens]]
// configured, and --http-no-auth only on loopback. ready, when non-nil,
// receives the bound address.
func (s *Server) ServeHTTP(ctx context.Context, addr string, opts HTTPOptions, ready func(net.Addr)) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: %v (use host:port, e.g. 127.0.0.1:8765)", addr, err)
	}
	if opts.Auth == nil {
		return errors.New("--http: no authenticator")
	}
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		loopback = true
	}
	switch src := opts.Auth.Source(); {
	case src == httpauth.SourceNone && !loopback:
		return fmt.Errorf("--http %q: --http-no-auth is accepted on loopback addresses only (127.0.0.1, [::1] or localhost)", addr)
	case src != httpauth.SourceTokens && !loopback:
		return fmt.Errorf("--http %q: a non-loopback address is served only with [[mcp.http.tokens]] configured (one bearer token per principal); use 127.0.0.1 otherwise", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http %s: %w", addr, err)
	}
	httpSrv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	h, err := s.NewHTTPHandler(opts, httpSrv)
	if err != nil {
		ln.Close()
		return err
	}
	httpSrv.Handler = h
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if opts.OnShutdown != nil {
			opts.OnShutdown()
		}
		if err := h.Shutdown(sctx); err != nil {
			s.log.Warn("HTTP shutdown: requests still in flight were cut", "err", err)
			httpSrv.Close()
		}
		<-errc
		return nil
	case err := <-errc:
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if opts.OnShutdown != nil {
			opts.OnShutdown()
		}
		_ = h.Shutdown(sctx)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
