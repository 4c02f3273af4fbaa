package httpauth

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
)

const twoTokens = `
[agents.presets.observer]
tools.allow = ["sessions_list"]

[[mcp.http.tokens]]
name = "alice"
token_env = "ALICE_TOKEN"

[[mcp.http.tokens]]
name = "bob"
sha256 = "%s"
agent = "research"
preset = "observer"
`

func parse(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestTwoTokensTwoPrincipals(t *testing.T) {
	sum := sha256.Sum256([]byte("bob-secret"))
	cfg := parse(t, strings.Replace(twoTokens, "%s", hex.EncodeToString(sum[:]), 1))
	a, gen, err := FromConfig(cfg, &Options{Getenv: func(k string) string {
		if k == "ALICE_TOKEN" {
			return "alice-secret"
		}
		return ""
	}})
	if err != nil || gen != "" || a.Source() != SourceTokens {
		t.Fatalf("FromConfig: %v, generated %q, source %s", err, gen, a.Source())
	}
	tests := []struct {
		header string
		want   Principal
		err    error
	}{
		{"Bearer alice-secret", Principal{Name: "alice", AgentID: "main", SessionKey: "agent:main:main"}, nil},
		{"bearer   bob-secret", Principal{Name: "bob", AgentID: "research", Preset: "observer", SessionKey: "agent:research:observer"}, nil},
		{"", Principal{}, ErrNoToken},
		{"Basic YWxpY2U6c2VjcmV0", Principal{}, ErrNoToken},
		{"Bearer alice-secreT", Principal{}, ErrBadToken},
		{"Bearer ", Principal{}, ErrNoToken},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/mcp", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		got, err := a.Authenticate(r)
		if got != tt.want || err != tt.err {
			t.Errorf("Authenticate(%q) = %+v, %v; want %+v, %v", tt.header, got, err, tt.want, tt.err)
		}
	}
}

func TestMiddleware401AndPrincipalInContext(t *testing.T) {
	a, _, err := FromConfig(parse(t, ""), &Options{Getenv: func(k string) string { return map[string]string{EnvToken: "tok"}[k] }})
	if err != nil {
		t.Fatal(err)
	}
	var seen Principal
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen, _ = FromContext(r.Context()) }))
	for _, hdr := range []string{"", "Bearer wrong"} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/mcp", nil)
		if hdr != "" {
			r.Header.Set("Authorization", hdr)
		}
		h.ServeHTTP(w, r)
		if w.Code != 401 || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%q: got %d, WWW-Authenticate %q; want 401 with a Bearer challenge", hdr, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/mcp", nil)
	r.Header.Set("Authorization", "Bearer tok")
	h.ServeHTTP(w, r)
	if w.Code != 200 || seen.SessionKey != "agent:main:main" || seen.Name != "default" {
		t.Fatalf("good token: %d, principal %+v", w.Code, seen)
	}
}

func TestGeneratedToken(t *testing.T) {
	a, gen, err := FromConfig(parse(t, "[agents.presets.observer]\n[mcp]\npreset = \"observer\"\n"), nil)
	if err != nil || len(gen) != 64 || a.Source() != SourceGenerated {
		t.Fatalf("got %v, %q, %s", err, gen, a.Source())
	}
	r := httptest.NewRequest("GET", "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+gen)
	p, err := a.Authenticate(r)
	if err != nil || p.SessionKey != "agent:main:observer" {
		t.Fatalf("generated token: %+v, %v (want own session agent:main:observer)", p, err)
	}
}

func TestTokenEnvUnsetIsAnError(t *testing.T) {
	cfg := parse(t, "[[mcp.http.tokens]]\nname = \"a\"\ntoken_env = \"NOPE\"\n")
	if _, _, err := FromConfig(cfg, nil); err == nil || !strings.Contains(err.Error(), "mcp.http.tokens[0].token_env") {
		t.Fatalf("got %v, want an error naming mcp.http.tokens[0].token_env", err)
	}
}

func TestCheckOrigin(t *testing.T) {
	h := CheckOrigin([]string{"http://localhost:3000"}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for origin, want := range map[string]int{"": 200, "http://localhost:3000": 200, "HTTP://LOCALHOST:3000": 200, "http://evil.example": 403, "null": 403} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/mcp", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Origin %q: got %d, want %d", origin, w.Code, want)
		}
	}
}

// The dashboard's view of a token: the policy caller of its principal,
// whose key is the principal's own session (never agent:main:main for a
// preset), with the preset's layers.
func TestCallersForPolicySurfaces(t *testing.T) {
	sum := sha256.Sum256([]byte("bob-secret"))
	cfg := parse(t, strings.Replace(twoTokens, "%s", hex.EncodeToString(sum[:]), 1))
	a, _, err := FromConfig(cfg, &Options{Getenv: func(string) string { return "alice-secret" }})
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(cfg, nil, []string{"sessions_list"})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer bob-secret")
	c, err := a.Callers(e).Authenticate(r)
	if err != nil || c.Key != "agent:research:observer" || c.AgentID != "research" || len(c.Layers) != 1 || c.Layers[0].Name != "observer" {
		t.Fatalf("bob's caller: %+v, %v", c, err)
	}
	r.Header.Set("Authorization", "Bearer nope")
	if _, err := a.Callers(e).Authenticate(r); err != ErrBadToken {
		t.Fatalf("wrong token: %v, want ErrBadToken", err)
	}
}
