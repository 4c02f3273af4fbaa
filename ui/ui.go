// Package ui owns sessionplane's read-only web dashboard: the sessions
// list with full-text search, the live run tree, transcripts, and cost and
// activity charts. Its assets are embedded (no Node, no CDN, no external
// font at run time) and its JSON API and Server-Sent Events show only what
// the viewer's policy caller may read: every session key passes
// policy.Engine.Access before anything about it leaves the server, and the
// search is the sessions_search tool itself. Nothing counts or names what
// policy hides.
//
// Live updates follow the database, whichever process writes it: one
// goroutine polls SQLite's data_version and wakes the event streams, which
// recompute their view and send it when it changed.
package ui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

//go:embed assets
var assetFS embed.FS

// CookiePrefix starts the name of the dashboard's session cookie. Each
// dashboard adds a random suffix: browsers share cookies across ports, so
// two dashboards on one host must not overwrite each other's cookie.
const CookiePrefix = "sessionplane_ui_"

// Options configure a dashboard. Store, Config, Policy and Auth are
// required.
type Options struct {
	Store  *store.Store
	Config *config.Config
	Policy *policy.Engine
	Auth   Authenticator
	// Prefix is the path the dashboard is mounted under, with a trailing
	// slash (default "/"); e.g. "/ui/" to serve it beside /mcp.
	Prefix string
	Logger *slog.Logger // default: discard
	// Poll is how often the database's change marker is read (default 300ms).
	Poll time.Duration
	// Keepalive is how often an idle event stream gets a comment line
	// (default 15s), so proxies and browsers keep it open.
	Keepalive time.Duration
	// CookieTTL is how long a browser session lasts (default 12h).
	CookieTTL time.Duration
	Now       func() time.Time // default time.Now
}

// UI is the dashboard: an http.Handler. Close stops its change poller and
// ends its event streams.
type UI struct {
	opts    Options
	log     *slog.Logger
	prefix  string
	reg     *tools.Registry
	cookies *cookieSessions
	cookie  string // the cookie's name
	assets  fs.FS

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) when the database changed

	// watchMu guards watch, the change marker shared by the poller and
	// version (opened on first use, closed on an error and by the poller
	// when the UI closes).
	watchMu sync.Mutex
	watch   *store.ChangeWatch

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a dashboard and starts its change poller.
func New(opts Options) (*UI, error) {
	if opts.Store == nil || opts.Config == nil || opts.Policy == nil || opts.Auth == nil {
		return nil, errors.New("ui: Options.Store, Config, Policy and Auth are required")
	}
	if opts.Prefix == "" {
		opts.Prefix = "/"
	}
	if !strings.HasPrefix(opts.Prefix, "/") || !strings.HasSuffix(opts.Prefix, "/") {
		return nil, errors.New(`ui: Options.Prefix must start and end with "/" (e.g. "/ui/")`)
	}
	if opts.Poll <= 0 {
		opts.Poll = 300 * time.Millisecond
	}
	if opts.Keepalive <= 0 {
		opts.Keepalive = 15 * time.Second
	}
	if opts.CookieTTL <= 0 {
		opts.CookieTTL = 12 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}
	// The search is the sessions_search tool, called through the registry:
	// the same validation, gate and policy filter as an MCP client's call.
	env := &tools.Env{Store: opts.Store, Config: opts.Config, Policy: opts.Policy, Log: log}
	u := &UI{opts: opts, log: log, prefix: opts.Prefix, reg: tools.NewRegistry(env, tools.ReadTools()...),
		cookies: newCookieSessions(opts.CookieTTL, opts.Now), cookie: CookiePrefix + NewToken()[:12], assets: sub, changed: make(chan struct{})}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.wg.Add(1)
	go u.poll()
	return u, nil
}

// Close stops the poller and ends every open event stream. It may be
// called more than once.
func (u *UI) Close() error {
	u.cancel()
	u.wg.Wait()
	return nil
}

// CallerFor builds the policy caller of the principal that acts as agent
// under preset (empty: the agent's configured preset), exactly as the MCP
// server builds its client's: the same own session (agent:<a>:main when
// no preset is given, agent:<a>:<preset> otherwise), so a restricted
// viewer never takes the unrestricted client's session for its own. An
// unknown preset is an error.
func CallerFor(gate *policy.Engine, agent, preset string) (policy.Caller, error) {
	if agent == "" {
		agent = "main"
	}
	return httpauth.Principal{Name: "dashboard", AgentID: agent, Preset: preset,
		SessionKey: config.OwnSession(agent, preset, "")}.Caller(gate)
}

// ServeHTTP implements http.Handler.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard is read-only: only GET is served", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path+"/" == u.prefix {
		http.Redirect(w, r, u.prefix, http.StatusMovedPermanently)
		return
	}
	if !strings.HasPrefix(r.URL.Path, u.prefix) {
		http.NotFound(w, r)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, u.prefix)
	caller, ok := u.authenticate(w, r, path)
	if !ok {
		return
	}
	switch {
	case path == "" || path == "index.html":
		u.serveAsset(w, r, "index.html")
	case path == "app.js" || path == "style.css" || path == "favicon.svg":
		u.serveAsset(w, r, path)
	case path == "events":
		u.serveEvents(w, r, caller)
	case strings.HasPrefix(path, "api/"):
		u.serveAPI(w, r, caller, strings.TrimPrefix(path, "api/"))
	default:
		http.NotFound(w, r)
	}
}

// authenticate finds the caller: the session cookie, else a bearer token,
// else a ?token= query parameter (which sets the cookie and redirects to
// the same address without it). It answers 401 itself when there is none.
func (u *UI) authenticate(w http.ResponseWriter, r *http.Request, path string) (policy.Caller, bool) {
	if tok := r.URL.Query().Get("token"); tok != "" {
		r2 := r.Clone(r.Context())
		r2.Header.Set("Authorization", "Bearer "+tok)
		c, err := u.opts.Auth.Authenticate(r2)
		if err != nil {
			u.unauthorized(w, path, "the token in the address is not valid")
			return c, false
		}
		id, exp := u.cookies.create(c)
		http.SetCookie(w, &http.Cookie{Name: u.cookie, Value: id, Path: u.prefix, Expires: exp, HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		q := r.URL.Query()
		q.Del("token")
		dest := url.URL{Path: r.URL.Path, RawQuery: q.Encode(), Fragment: r.URL.Fragment}
		http.Redirect(w, r, dest.String(), http.StatusSeeOther)
		return c, false
	}
	if ck, err := r.Cookie(u.cookie); err == nil {
		if c, ok := u.cookies.get(ck.Value); ok {
			return c, true
		}
	}
	if _, ok := BearerToken(r); ok {
		c, err := u.opts.Auth.Authenticate(r)
		if err == nil {
			return c, true
		}
		u.unauthorized(w, path, "the bearer token is not valid")
		return c, false
	}
	u.unauthorized(w, path, "no token: open the address sessionplane printed at start (it ends in ?token=…)")
	return policy.Caller{}, false
}

func (u *UI) unauthorized(w http.ResponseWriter, path, why string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="sessionplane ui"`)
	if strings.HasPrefix(path, "api/") || path == "events" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": why})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	w.Write([]byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>sessionplane: sign in</title></head>
<body><h1>sessionplane dashboard</h1>
<p>` + htmlEscape(why) + `.</p><p>Start it with <code>sessionplane ui</code> and open the address it prints on stderr, or send <code>Authorization: Bearer &lt;token&gt;</code>.</p></body></html>`))
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(s)
}

var contentTypes = map[string]string{
	"index.html":  "text/html; charset=utf-8",
	"app.js":      "text/javascript; charset=utf-8",
	"style.css":   "text/css; charset=utf-8",
	"favicon.svg": "image/svg+xml",
}

func (u *UI) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	b, err := fs.ReadFile(u.assets, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", contentTypes[name])
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}

// poll reads the database's change marker every Poll and wakes the event
// streams when it moved.
func (u *UI) poll() {
	defer u.wg.Done()
	defer func() {
		u.watchMu.Lock()
		if u.watch != nil {
			u.watch.Close()
			u.watch = nil
		}
		u.watchMu.Unlock()
	}()
	var last int64 = -1
	t := time.NewTicker(u.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-u.ctx.Done():
			return
		case <-t.C:
		}
		v, ok := u.version(u.ctx)
		if ok && v != last {
			last = v
			u.mu.Lock()
			close(u.changed)
			u.changed = make(chan struct{})
			u.mu.Unlock()
		}
	}
}

// version reads the database's change marker (ok false when it cannot be
// read; the error is logged and the marker reopened at the next call).
func (u *UI) version(ctx context.Context) (int64, bool) {
	u.watchMu.Lock()
	defer u.watchMu.Unlock()
	if u.ctx.Err() != nil {
		return 0, false
	}
	if u.watch == nil {
		w, err := u.opts.Store.WatchChanges(u.ctx)
		if err != nil {
			u.log.Warn("ui: watch database changes", "err", err)
			return 0, false
		}
		u.watch = w
	}
	v, err := u.watch.Version(ctx)
	if err != nil {
		if u.ctx.Err() == nil && ctx.Err() == nil {
			u.log.Warn("ui: read database change marker", "err", err)
		}
		u.watch.Close()
		u.watch = nil
		return 0, false
	}
	return v, true
}

// consistent runs compute until nothing was committed while it read (at
// most three times): a view is read with several queries, and one that
// straddled a commit would show, say, a session already timed out beside
// its run still running.
func (u *UI) consistent(ctx context.Context, compute func(context.Context) (any, error)) (any, error) {
	for i := 0; ; i++ {
		v0, ok0 := u.version(ctx)
		v, err := compute(ctx)
		if err != nil || i == 2 {
			return v, err
		}
		if v1, ok1 := u.version(ctx); !ok0 || !ok1 || v0 == v1 {
			return v, err
		}
	}
}

// changes returns a channel closed at the next database change.
func (u *UI) changes() <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.changed
}
