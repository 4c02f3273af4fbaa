package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sessionplane/sessionplane/policy"
)

// Authenticator names the principal behind a request. Implementations read
// the bearer token of the Authorization header ("Authorization: Bearer
// <token>") and return the policy caller the dashboard shows data for, or
// an error when the token is missing or unknown. The dashboard turns a
// ?token= query parameter into that header before calling it, and keeps
// the answer for the browser in a session cookie.
type Authenticator interface {
	Authenticate(r *http.Request) (policy.Caller, error)
}

// ErrUnauthenticated is returned by an Authenticator for a request without
// a known token.
var ErrUnauthenticated = errors.New("a valid bearer token is required")

// TokenAuth is the one-principal Authenticator of `sessionplane ui`: one
// token, compared in constant time, names one caller.
type TokenAuth struct {
	sum    [32]byte
	caller policy.Caller
}

// NewTokenAuth returns an Authenticator that accepts token for caller.
func NewTokenAuth(token string, caller policy.Caller) (*TokenAuth, error) {
	if len(token) < 16 {
		return nil, fmt.Errorf("ui token: %d characters is too short: use at least 16 (or leave SESSIONPLANE_UI_TOKEN unset to get a generated one)", len(token))
	}
	return &TokenAuth{sum: sha256.Sum256([]byte(token)), caller: caller}, nil
}

// Authenticate implements Authenticator.
func (a *TokenAuth) Authenticate(r *http.Request) (policy.Caller, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return policy.Caller{}, ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], a.sum[:]) != 1 {
		return policy.Caller{}, ErrUnauthenticated
	}
	return a.caller, nil
}

// BearerToken returns the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// NewToken returns a random token (32 bytes, hex).
func NewToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return short reads)
	return hex.EncodeToString(b)
}

// cookieSessions are the browser sessions: a random id in an HttpOnly
// cookie names the caller its token authenticated, until it expires.
type cookieSessions struct {
	mu  sync.Mutex
	m   map[string]cookieSession
	ttl time.Duration
	now func() time.Time
}

type cookieSession struct {
	caller  policy.Caller
	expires time.Time
}

// maxCookieSessions bounds the table; expired entries are dropped first,
// then the oldest.
const maxCookieSessions = 1024

func newCookieSessions(ttl time.Duration, now func() time.Time) *cookieSessions {
	return &cookieSessions{m: map[string]cookieSession{}, ttl: ttl, now: now}
}

func (c *cookieSessions) create(caller policy.Caller) (string, time.Time) {
	id := NewToken()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.m) >= maxCookieSessions {
		var oldest string
		var oldestT time.Time
		for k, s := range c.m {
			if now.After(s.expires) {
				delete(c.m, k)
				continue
			}
			if oldest == "" || s.expires.Before(oldestT) {
				oldest, oldestT = k, s.expires
			}
		}
		if len(c.m) >= maxCookieSessions {
			delete(c.m, oldest)
		}
	}
	exp := now.Add(c.ttl)
	c.m[id] = cookieSession{caller: caller, expires: exp}
	return id, exp
}

func (c *cookieSessions) get(id string) (policy.Caller, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[id]
	if !ok {
		return policy.Caller{}, false
	}
	if c.now().After(s.expires) {
		delete(c.m, id)
		return policy.Caller{}, false
	}
	return s.caller, true
}
