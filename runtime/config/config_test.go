package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestExampleLoadsEveryKey(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "testdata", "example.toml"))
	if err != nil {
		t.Fatalf("example.toml: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"mcp.agent", cfg.MCP.Agent, "main"},
		{"mcp.worker_pool", cfg.MCP.WorkerPool, 64},
		{"mcp.http.session_idle_minutes", cfg.MCP.HTTP.SessionIdleMinutes, 30},
		{"mcp.http.max_sessions", cfg.MCP.HTTP.MaxSessions, 1000},
		{"mcp.http.tokens[0].token_env", cfg.MCP.HTTP.Tokens[0].TokenEnv, "SESSIONPLANE_ME"},
		{"own session of [mcp]", OwnSession(cfg.MCP.Agent, cfg.MCP.Preset, cfg.MCP.Session), "agent:main:main"},
		{"own session under a preset", OwnSession("main", "observer", ""), "agent:main:observer"},
		{"providers.local.kind", cfg.Providers["local"].Kind, "openai-compatible"},
		{"providers.local.max_retries", cfg.Providers["local"].MaxRetries, 3},
		{"providers.demo.script (relative to the file)", cfg.Providers["demo"].Script, filepath.Join("..", "..", "testdata", "providers", "demo.script.json")},
		{"models[1].cost.output", cfg.Models[1].Cost.Output, 15.0},
		{"agents.defaults.max_iterations", cfg.Agents.Defaults.MaxIterations, 25},
		{"agents.defaults.subagents.max_concurrent", cfg.Agents.Defaults.Subagents.MaxConcurrent, 8},
		{"agents.list[0].subagents.allow_agents", strings.Join(cfg.Agents.List[0].Subagents.AllowAgents, ","), "researcher"},
		{"agents.list[1].subagents.thinking", cfg.Agents.List[1].Subagents.Thinking, "low"},
		{"presets.observer.key_prefix", cfg.Agents.Presets["observer"].Sessions.KeyPrefix, "agent:research:"},
		{"presets.observer.can_send", *cfg.Agents.Presets["observer"].Sessions.CanSend, false},
		{"presets.destination-router.tool_choice", cfg.Agents.Presets["destination-router"].ToolControls.ToolChoice.Name, "sessions_yield"},
		{"tools.sessions.visibility", cfg.Tools.Sessions.Visibility, "all"},
		{"approval.spawn-subagent", cfg.Approval["spawn-subagent"], "auto"},
		{"mcp_servers[0].env", cfg.MCPServers[0].Env["NODE_ENV"], "production"},
		{"cluster.host_id", cfg.Cluster.HostID, "web-1"},
		{"cluster.stale_seconds", cfg.Cluster.StaleSeconds, 15},
		{"cron.min_every_seconds", cfg.Cron.MinEverySeconds, 10},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	home, _ := os.UserHomeDir()
	if !strings.HasPrefix(cfg.Store.Path, home) {
		t.Errorf("store.path %q: ~ not expanded", cfg.Store.Path)
	}
	if cfg.Line("agents.presets.observer.sessions.key_prefix") == 0 {
		t.Errorf("no line recorded for a dotted key inside a preset table")
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MCP.Agent != "main" || cfg.Tools.Sessions.Visibility != "all" || cfg.Agents.Defaults.Subagents.MaxConcurrent != 8 {
		t.Fatalf("defaults: %+v", cfg)
	}
	if !strings.HasSuffix(cfg.Store.Path, filepath.Join("sessionplane", "sessionplane.db")) {
		t.Fatalf("default db path %q", cfg.Store.Path)
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name     string
		doc      string
		wantPath string
		wantLine int
		wantMsg  string
	}{
		{"unknown key", "[mcp]\nagent = \"main\"\nagnet = \"x\"\n", "mcp.agnet", 3, "unknown key"},
		{"unknown table", "[stor]\npath = \"x\"\n", "stor", 1, "unknown key"},
		{"wrong type", "[agents.defaults]\nmax_iterations = \"many\"\n", "agents.defaults.max_iterations", 2, "expected an integer, got a TOML string"},
		{"wrong bool", "[agents.presets.x]\nsessions.can_send = \"yes\"\n", "agents.presets.x.sessions.can_send", 2, "expected true or false"},
		{"bad visibility", "\n[tools.sessions]\nvisibility = \"everyone\"\n", "tools.sessions.visibility", 3, "use one of self, tree, agent, all"},
		{"ping pong range", "[tools.sessions]\nmax_ping_pong_turns = 9\n", "tools.sessions.max_ping_pong_turns", 2, "between 0 and 5"},
		{"bad provider kind", "[providers.p]\nkind = \"gpt\"\n", "providers.p.kind", 2, "not a provider kind"},
		{"scripted without script", "[providers.p]\nkind = \"scripted\"\n", "providers.p.script", 1, "needs script"},
		{"model names missing provider", "[[models]]\nid = \"a/b\"\nprovider = \"nope\"\n", "models[0].provider", 3, "not defined"},
		{"unknown default model", "[agents.defaults]\nmodel = \"x/y\"\n", "agents.defaults.model", 2, "not defined in [[models]]"},
		{"bad thinking", "[agents.defaults.subagents]\nthinking = \"max\"\n", "agents.defaults.subagents.thinking", 2, "not a thinking level"},
		{"max_concurrent zero", "[agents.defaults.subagents]\nmax_concurrent = 0\n", "agents.defaults.subagents.max_concurrent", 2, "between 1 and 1024"},
		{"second array entry", "[[agents.list]]\nid = \"a\"\n[[agents.list]]\nid = \"b\"\npreset = \"ghost\"\n", "agents.list[1].preset", 5, "preset \"ghost\" is not defined"},
		{"nested table of array entry", "[[agents.list]]\nid = \"a\"\n[agents.list.subagents]\nthinking = \"loud\"\n", "agents.list[0].subagents.thinking", 4, "not a thinking level"},
		{"tool_choice needs name", "[agents.presets.r.tool_controls]\ntool_choice = { type = \"tool\" }\n", "agents.presets.r.tool_controls.tool_choice.name", 2, "needs name"},
		{"bad approval class", "[approval]\nspawn = \"auto\"\n", "approval.spawn", 2, "not an action class"},
		{"bad approval mode", "[approval]\nspawn-subagent = \"maybe\"\n", "approval.spawn-subagent", 2, "not an approval mode"},
		{"bad park_minutes", "[approval]\npark_minutes = \"soon\"\n", "approval.park_minutes", 2, "not a number of minutes"},
		{"server name with __", "[[mcp_servers]]\nname = \"a__b\"\ncommand = \"x\"\n", "mcp_servers[0].name", 2, "no \"__\""},
		{"syntax", "[mcp\n", "", 1, "TOML syntax"},
		{"mcp preset missing", "[mcp]\npreset = \"observer\"\n", "mcp.preset", 2, "not defined"},
		{"own session of another agent", "[mcp]\nsession = \"agent:other:x\"\n", "mcp.session", 2, "agent:main:<name>"},
		{"preset named main", "[agents.presets.main]\n[mcp]\npreset = \"main\"\n", "mcp.session", 2, "rename the preset"},
		{"idle minutes zero", "[mcp.http]\nsession_idle_minutes = 0\n", "mcp.http.session_idle_minutes", 2, "between 1 and 10080"},
		{"max sessions zero", "[mcp.http]\nmax_sessions = 0\n", "mcp.http.max_sessions", 2, "between 1 and 100000"},
		{"bad origin", "[mcp.http]\nallowed_origins = [\"localhost:3000\"]\n", "mcp.http.allowed_origins[0]", 2, "not an origin"},
		{"token without secret", "[[mcp.http.tokens]]\nname = \"a\"\n", "mcp.http.tokens[0]", 1, "token_env"},
		{"token bad sha", "[[mcp.http.tokens]]\nname = \"a\"\nsha256 = \"abc\"\n", "mcp.http.tokens[0].sha256", 3, "64 hex digits"},
		{"token unknown preset", "[[mcp.http.tokens]]\nname = \"a\"\ntoken_env = \"T\"\npreset = \"ghost\"\n", "mcp.http.tokens[0].preset", 4, "not defined"},
		{"tokens share a session across policies", "[agents.presets.o]\n[[mcp.http.tokens]]\nname = \"a\"\ntoken_env = \"T\"\n[[mcp.http.tokens]]\nname = \"b\"\ntoken_env = \"U\"\npreset = \"o\"\nsession = \"agent:main:main\"\n", "mcp.http.tokens[1].session", 9, "never share a session"},
		{"stale_seconds too short", "[cluster]\nstale_seconds = 4\n", "cluster.stale_seconds", 2, "between 6 and 3600"},
		{"host_id too long", "[cluster]\nhost_id = \"" + strings.Repeat("h", 129) + "\"\n", "cluster.host_id", 2, "over the limit of 128"},
		{"min_every_seconds zero", "[cron]\nmin_every_seconds = 0\n", "cron.min_every_seconds", 2, "between 1 and 86400"},
		{"duplicate token names", "[[mcp.http.tokens]]\nname = \"a\"\ntoken_env = \"T\"\n[[mcp.http.tokens]]\nname = \"a\"\ntoken_env = \"U\"\n", "mcp.http.tokens[1].name", 5, "unique"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc), "bad.toml")
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			var found *Problem
			for i := range ce.Problems {
				if ce.Problems[i].Path == c.wantPath {
					found = &ce.Problems[i]
				}
			}
			if found == nil {
				t.Fatalf("no problem at %q in:\n%v", c.wantPath, err)
			}
			if found.Line != c.wantLine {
				t.Errorf("line = %d, want %d (%v)", found.Line, c.wantLine, err)
			}
			if !strings.Contains(found.Msg, c.wantMsg) {
				t.Errorf("message %q does not contain %q", found.Msg, c.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "config bad.toml: ") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func TestResolveOrder(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("SESSIONPLANE_CONFIG", "")
	if got := Resolve(""); got != "" {
		t.Fatalf("no file anywhere: got %q", got)
	}
	p := filepath.Join(dir, "sessionplane", "config.toml")
	os.MkdirAll(filepath.Dir(p), 0o700)
	os.WriteFile(p, nil, 0o600)
	if got := Resolve(""); got != p {
		t.Fatalf("xdg: got %q want %q", got, p)
	}
	t.Setenv("SESSIONPLANE_CONFIG", "/env.toml")
	if got := Resolve(""); got != "/env.toml" {
		t.Fatalf("env: got %q", got)
	}
	if got := Resolve("/flag.toml"); got != "/flag.toml" {
		t.Fatalf("flag: got %q", got)
	}
}

func TestSubagentModelResolution(t *testing.T) {
	cfg, err := Parse([]byte(`
[providers.p]
kind = "openai-compatible"
[[models]]
id = "p/a"
provider = "p"
[[models]]
id = "p/b"
provider = "p"
[[models]]
id = "p/c"
provider = "p"
[agents.defaults]
model = "p/a"
[agents.defaults.subagents]
model = "p/b"
[[agents.list]]
id = "x"
model = "p/c"
[[agents.list]]
id = "y"
model = "p/c"
[agents.list.subagents]
model = "p/a"
`), "m.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ agent, want, src string }{
		{"x", "p/c", "agents.list[0].model"},
		{"y", "p/a", "agents.list[1].subagents.model"},
		{"z", "p/b", "agents.defaults.subagents.model"},
	} {
		got, src := cfg.SubagentModel(c.agent)
		if got != c.want || src != c.src {
			t.Errorf("%s: got %s from %s, want %s from %s", c.agent, got, src, c.want, c.src)
		}
	}
}

// [store] url selects PostgreSQL: it replaces the SQLite path, is never
// made relative to the file, and must be a postgres:// URL.
func TestStoreURL(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const url = "postgres://sp:pw@db.example:5432/sp?sslmode=disable"
	cfg, err := Load(write("[store]\npath = \"rel.db\"\nurl = \"" + url + "\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Path != url {
		t.Fatalf("store path %q, want the url %q", cfg.Store.Path, url)
	}
	cfg, err = Load(write("[store]\npath = \"postgresql://h/db\"\n"))
	if err != nil || cfg.Store.Path != "postgresql://h/db" {
		t.Fatalf("a URL in path: %q %v, want it unchanged", cfg.Store.Path, err)
	}
	_, err = Load(write("[store]\nurl = \"mysql://h/db\"\n"))
	if err == nil || !strings.Contains(err.Error(), "store.url") || !strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("a non-PostgreSQL url: %v, want an error naming store.url and the form", err)
	}
}

// The host id: $SESSIONPLANE_HOST_ID over [cluster] host_id over the
// hostname; the defaults of the stale interval and the cron minimum.
func TestClusterHostIDAndDefaults(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvHostID {
				return v
			}
			return ""
		}
	}
	host, _ := os.Hostname()
	cases := []struct {
		name, key, env, want string
	}{
		{"env wins", "from-config", "from-env", "from-env"},
		{"config", "from-config", "", "from-config"},
		{"hostname", "", "", host},
	}
	for _, c := range cases {
		if got := (Cluster{HostID: c.key}).HostIDFrom(env(c.env)); got != c.want {
			t.Errorf("%s: HostIDFrom = %q, want %q", c.name, got, c.want)
		}
	}
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.Stale() != 15*time.Second || cfg.Cron.MinEvery() != 10*time.Second || (Cluster{}).Stale() != 15*time.Second {
		t.Errorf("defaults: stale %v, cron minimum %v", cfg.Cluster.Stale(), cfg.Cron.MinEvery())
	}
}

// The resolved config is printed by `config check`: a database password,
// in the URL's user part or as a parameter, never is.
func TestStoreRedacted(t *testing.T) {
	s := Store{URL: "postgres://u:s3cret@h:5432/db?sslmode=disable&password=p2", Path: "/tmp/sp.db"}
	r := s.Redacted()
	if strings.Contains(r.URL, "s3cret") || strings.Contains(r.URL, "p2") || !strings.Contains(r.URL, "u:xxxxx@h:5432/db") {
		t.Fatalf("redacted URL %q", r.URL)
	}
	if r.Path != "/tmp/sp.db" || s.URL == r.URL {
		t.Fatalf("path %q changed, or the original was modified: %q", r.Path, s.URL)
	}
}

// validID accepts exactly what ^[a-z0-9][a-z0-9_-]{0,63}$ does.
func TestValidIDMatchesItsPattern(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	cases := []string{"", "a", "0", "_", "-", "a_", "a-b_c9", "A", "aB", "a.b", "a b", "é", "main\n",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65), "-" + strings.Repeat("a", 10), "a\x00"}
	for _, c := range cases {
		if got, want := validID(c), re.MatchString(c); got != want {
			t.Errorf("validID(%q) = %v, want %v", c, got, want)
		}
	}
}
