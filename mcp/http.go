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

	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/mcp/httpauth"
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
	h := &HTTPHandler{s: s, sessions: newHTTPSessions(opts.IdleTimeout, opts.MaxSessions, opts.Now), maxBody: opts.MaxBodyBytes, stop: make(chan struct{})}
	mopts := []server.StreamableHTTPOption{
		server.WithStreamableHTTPLogger(s.log),
		server.WithSessionIdManagerResolver(h.sessions),
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

// Sessions is the number of live HTTP sessions.
func (h *HTTPHandler) Sessions() int { return h.sessions.count() }

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

// gate serves an authenticated request: an initialize takes a slot under
// the cap, any other request must name a live session of its principal
// (404 otherwise, as the Streamable HTTP transport specifies for an
// unknown or ended session).
func (h *HTTPHandler) gate(w http.ResponseWriter, r *http.Request) {
	p, _ := httpauth.FromContext(r.Context())
	sid := r.Header.Get(server.HeaderKeySessionID)
	init := false
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
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
		if !h.sessions.reserve() {
			w.Header().Set("Retry-After", "60")
			http.Error(w, fmt.Sprintf("503 too many MCP sessions: the limit is %d live sessions ([mcp.http] max_sessions); end unused ones with DELETE or wait for idle ones to expire ([mcp.http] session_idle_minutes)", h.sessions.max), http.StatusServiceUnavailable)
			return
		}
		defer h.sessions.release()
	case sid != "":
		switch err := h.sessions.check(sid, p); {
		case errors.Is(err, errSessionExpired):
			h.expire(sid)
			http.Error(w, "404 session expired (idle past [mcp.http] session_idle_minutes): initialize a new one", http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, "404 session not found: it was never issued, was deleted or expired; initialize a new one", http.StatusNotFound)
			return
		}
		if r.Method == http.MethodGet {
			defer h.sessions.stream(sid)()
		}
	case r.Method == http.MethodGet || r.Method == http.MethodDelete:
		http.Error(w, "400 Mcp-Session-Id header required: initialize first", http.StatusBadRequest)
		return
	}
	h.mcp.ServeHTTP(w, r)
}

// expire ends a session idle past the limit: out of the table, then a
// DELETE through mcp-go so that its own per-session state goes too.
func (h *HTTPHandler) expire(id string) {
	if !h.sessions.remove(id) {
		return
	}
	h.s.log.Info("HTTP session expired", "session", id)
	req := httptest.NewRequest(http.MethodDelete, "http://localhost/mcp", nil)
	req.Header.Set(server.HeaderKeySessionID, id)
	h.mcp.ServeHTTP(httptest.NewRecorder(), req)
	h.s.forgetConn(id)
}

// sweeper expires idle sessions every tick until Shutdown.
func (h *HTTPHandler) sweeper(every time.Duration) {
	defer h.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.Sweep()
		}
	}
}

// Sweep expires every session idle past the limit now (the sweeper calls
// it; tests too, after moving the clock).
func (h *HTTPHandler) Sweep() {
	for _, id := range h.sessions.expired() {
		h.expire(id)
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
