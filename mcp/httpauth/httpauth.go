// Package httpauth owns who an HTTP request comes from: bearer tokens
// (RFC 6750) from [[mcp.http.tokens]] or the single principal of [mcp],
// verified in constant time; the principal each token stands for; the
// Origin check for browsers; and the middleware that answers 401 or 403
// and puts the principal in the request context. The MCP Streamable HTTP
// transport and the web dashboard authenticate through it alike.
package httpauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
)

// EnvToken is the environment variable holding the token of the single
// principal when no [[mcp.http.tokens]] are configured.
const EnvToken = "SESSIONPLANE_HTTP_TOKEN"

// Principal is who a connection acts as: an agent, a preset ("" = the
// agent's own preset, if any) and its own session.
type Principal struct {
	Name       string // the token's name ("default" for the principal of [mcp])
	AgentID    string
	Preset     string
	SessionKey string // its own session (config.OwnSession)
}

// Default is the principal the [mcp] section and its flags describe.
func Default(cfg *config.Config) Principal {
	return Principal{Name: "default", AgentID: cfg.MCP.Agent, Preset: cfg.MCP.Preset,
		SessionKey: config.OwnSession(cfg.MCP.Agent, cfg.MCP.Preset, cfg.MCP.Session)}
}

// Caller is the policy identity of p: the layers of its preset (else of
// its agent's preset), its own session as the caller's key, a client call.
// An unknown preset is an error (fail closed).
func (p Principal) Caller(e *policy.Engine) (policy.Caller, error) {
	name := p.Preset
	if name == "" {
		name = e.AgentPreset(p.AgentID)
	}
	layers, err := e.Layers(name)
	if err != nil {
		return policy.Caller{}, fmt.Errorf("principal %s: %w", p.Name, err)
	}
	return policy.Caller{Key: p.SessionKey, AgentID: p.AgentID, Layers: layers, Client: true}, nil
}

// Source says where an Authenticator's tokens come from.
type Source string

// Sources.
const (
	SourceTokens    Source = "tokens"    // [[mcp.http.tokens]]
	SourceEnv       Source = "env"       // $SESSIONPLANE_HTTP_TOKEN
	SourceGenerated Source = "generated" // random, made at start
	SourceNone      Source = "none"      // --http-no-auth: every request is the default principal
)

type entry struct {
	sum [sha256.Size]byte
	p   Principal
}

// Authenticator verifies bearer tokens. It is safe for concurrent use.
type Authenticator struct {
	entries []entry
	source  Source
	anon    Principal // SourceNone only
}

// ErrNoToken and ErrBadToken are what Authenticate returns.
var (
	ErrNoToken  = errors.New("no bearer token: send the header Authorization: Bearer <token>")
	ErrBadToken = errors.New("the bearer token is not one of this server's tokens")
)

// Options tune FromConfig; nil is allowed.
type Options struct {
	Getenv func(string) string // default: no environment (tests); main passes os.Getenv
	NoAuth bool                // --http-no-auth: no token is asked for
}

// FromConfig builds the authenticator of cfg: one principal per
// [[mcp.http.tokens]] entry; else the default principal with the token in
// $SESSIONPLANE_HTTP_TOKEN; else a random token, returned as generated so
// that the caller prints it once. Principal ownership of sessions is
// checked again here (the config may have been changed by flags).
func FromConfig(cfg *config.Config, opts *Options) (a *Authenticator, generated string, err error) {
	if opts == nil {
		opts = &Options{}
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if opts.NoAuth {
		return &Authenticator{source: SourceNone, anon: Default(cfg)}, "", nil
	}
	a = &Authenticator{}
	if len(cfg.MCP.HTTP.Tokens) == 0 {
		p := Default(cfg)
		tok := getenv(EnvToken)
		a.source = SourceEnv
		if tok == "" {
			tok, err = NewToken()
			if err != nil {
				return nil, "", err
			}
			generated = tok
			a.source = SourceGenerated
		}
		a.entries = []entry{{sum: sha256.Sum256([]byte(tok)), p: p}}
		return a, generated, nil
	}
	a.source = SourceTokens
	for i, t := range cfg.MCP.HTTP.Tokens {
		path := fmt.Sprintf("mcp.http.tokens[%d]", i)
		agent := t.Agent
		if agent == "" {
			agent = cfg.MCP.Agent
		}
		e := entry{p: Principal{Name: t.Name, AgentID: agent, Preset: t.Preset, SessionKey: config.OwnSession(agent, t.Preset, t.Session)}}
		switch {
		case t.TokenEnv != "":
			tok := getenv(t.TokenEnv)
			if tok == "" {
				return nil, "", fmt.Errorf("%s.token_env: the environment variable %s is empty or unset: export the token in it, or use sha256 = \"<hex of the token>\"", path, t.TokenEnv)
			}
			e.sum = sha256.Sum256([]byte(tok))
		default:
			b, err := hex.DecodeString(t.SHA256)
			if err != nil || len(b) != sha256.Size {
				return nil, "", fmt.Errorf("%s.sha256: must be 64 hex digits", path)
			}
			copy(e.sum[:], b)
		}
		for _, o := range a.entries {
			if o.sum == e.sum {
				return nil, "", fmt.Errorf("%s: the same token as %s: every token must be different", path, o.p.Name)
			}
		}
		a.entries = append(a.entries, e)
	}
	return a, "", nil
}

// NewToken returns a random token: 32 bytes from crypto/rand, hex.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate an HTTP token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Source says where the tokens come from.
func (a *Authenticator) Source() Source { return a.source }

// Principals lists every principal a request may authenticate as.
func (a *Authenticator) Principals() []Principal {
	if a.source == SourceNone {
		return []Principal{a.anon}
	}
	out := make([]Principal, len(a.entries))
	for i, e := range a.entries {
		out[i] = e.p
	}
	return out
}

// Authenticate returns the principal of r's bearer token. Every token is
// compared, in constant time, whatever matched: timing tells nothing about
// which token or how much of it was right.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	if a.source == SourceNone {
		return a.anon, nil
	}
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return Principal{}, ErrNoToken
	}
	sum := sha256.Sum256([]byte(tok))
	found := -1
	for i := range a.entries {
		if subtle.ConstantTimeCompare(sum[:], a.entries[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, ErrBadToken
	}
	return a.entries[found].p, nil
}

// bearer extracts the token of an "Authorization: Bearer <token>" header;
// the scheme is case-insensitive (RFC 7235).
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Middleware answers 401 with WWW-Authenticate: Bearer (RFC 6750 §3) to a
// request without a valid token and serves the others with their
// principal in the context (FromContext).
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			challenge := `Bearer realm="sessionplane"`
			if errors.Is(err, ErrBadToken) {
				challenge += `, error="invalid_token", error_description="the token is not valid for this server"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, "401 unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal an authenticated request carries.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// CheckOrigin answers 403 to a request whose Origin header is not one of
// allowed (exact scheme://host[:port], case-insensitive). A request
// without Origin is served: browsers always send one on cross-origin
// requests, and non-browser clients (MCP clients, curl) send none.
func CheckOrigin(allowed []string, next http.Handler) http.Handler {
	set := map[string]bool{}
	for _, o := range allowed {
		set[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !set[strings.ToLower(o)] {
			http.Error(w, fmt.Sprintf("403 forbidden: Origin %q is not allowed (add it to [mcp.http] allowed_origins)", o), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// CallerAuth authenticates requests as policy callers, for HTTP surfaces
// that gate what they show by policy (the dashboard): the caller is the
// one of the request's principal, with its own session as its key.
type CallerAuth struct {
	a *Authenticator
	e *policy.Engine
}

// Callers returns a CallerAuth over a, resolving presets with e.
func (a *Authenticator) Callers(e *policy.Engine) *CallerAuth { return &CallerAuth{a: a, e: e} }

// Authenticate returns the policy caller of r's principal; an unknown
// token, or a preset that no longer resolves, is an error.
func (c *CallerAuth) Authenticate(r *http.Request) (policy.Caller, error) {
	p, err := c.a.Authenticate(r)
	if err != nil {
		return policy.Caller{}, err
	}
	return p.Caller(c.e)
}
