// Package config owns sessionplane's TOML configuration: the typed shape of
// every key (SPEC §7), strict loading with errors that name the key path and
// line, built-in defaults, and the file resolution order.
//
// It is a leaf package: it imports nothing else of sessionplane, so policy,
// runtime and the MCP surface can all depend on it.
package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Config is the whole resolved configuration.
type Config struct {
	Store      Store               `toml:"store" json:"store"`
	MCP        MCP                 `toml:"mcp" json:"mcp"`
	Providers  map[string]Provider `toml:"providers" json:"providers"`
	Models     []Model             `toml:"models" json:"models"`
	Agents     Agents              `toml:"agents" json:"agents"`
	Tools      Tools               `toml:"tools" json:"tools"`
	Approval   map[string]string   `toml:"approval" json:"approval"`
	MCPServers []MCPServer         `toml:"mcp_servers" json:"mcp_servers"`
	Limits     Limits              `toml:"limits" json:"limits"`
	Cluster    Cluster             `toml:"cluster" json:"cluster"`
	Cron       Cron                `toml:"cron" json:"cron"`
	lines      map[string]int      // key path → line, for errors found after decoding
	source     string              // file the config came from ("" = defaults)
}

// Store is [store].
type Store struct {
	Path string `toml:"path" json:"path"`
	// URL, when set, is a PostgreSQL database (postgres://user:password@host:port/db?sslmode=...)
	// used instead of the SQLite file at Path. --db overrides both.
	URL string `toml:"url" json:"url,omitempty"`
}

// Redacted is s with any password in a PostgreSQL URL (user:password@ or
// a password= parameter) replaced by xxxxx, for printing.
func (s Store) Redacted() Store {
	s.URL, s.Path = redactDBURL(s.URL), redactDBURL(s.Path)
	return s
}

func redactDBURL(p string) string {
	if !IsPostgresURL(p) {
		return p
	}
	u, err := url.Parse(p)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// IsPostgresURL reports whether a database location is a PostgreSQL URL
// rather than an SQLite file.
func IsPostgresURL(p string) bool {
	return strings.HasPrefix(p, "postgres://") || strings.HasPrefix(p, "postgresql://")
}

// MCP is [mcp]: who the MCP client is.
type MCP struct {
	Agent  string `toml:"agent" json:"agent"`
	Preset string `toml:"preset" json:"preset"`
	// Session is the client's own session key; "" takes the rule: agent:<agent>:main
	// without a preset, agent:<agent>:<preset> under one.
	Session string `toml:"session" json:"session,omitempty"`
	// WorkerPool is the number of concurrent tool calls served on stdio (≥ 32 by default).
	WorkerPool int `toml:"worker_pool" json:"worker_pool"`
	// DrainSeconds bounds how long, after the end of stdin or SIGTERM, the
	// requests already received may take to finish and be answered.
	DrainSeconds int `toml:"drain_seconds" json:"drain_seconds"`
	// HTTP is [mcp.http]: authentication and session limits of --http.
	HTTP HTTP `toml:"http" json:"http"`
}

// HTTP is [mcp.http].
type HTTP struct {
	// Tokens are the bearer tokens accepted, one principal each. None: the
	// single principal of [mcp] with $SESSIONPLANE_HTTP_TOKEN or a generated token.
	Tokens []HTTPToken `toml:"tokens" json:"tokens,omitempty"`
	// SessionIdleMinutes ends an HTTP session (Mcp-Session-Id) idle this long.
	SessionIdleMinutes int `toml:"session_idle_minutes" json:"session_idle_minutes"`
	// MaxSessions caps the live HTTP sessions of every instance on the
	// database together; an initialize beyond it gets 503.
	MaxSessions int `toml:"max_sessions" json:"max_sessions"`
	// AllowedOrigins are the browser origins served (e.g. "http://localhost:3000");
	// a request with any other Origin header gets 403, one without is served.
	AllowedOrigins []string `toml:"allowed_origins" json:"allowed_origins,omitempty"`
}

// HTTPToken is one [[mcp.http.tokens]] entry: a bearer token and the
// principal it authenticates.
type HTTPToken struct {
	Name     string `toml:"name" json:"name"`
	TokenEnv string `toml:"token_env" json:"token_env,omitempty"` // env var holding the token
	SHA256   string `toml:"sha256" json:"sha256,omitempty"`       // hex SHA-256 of the token
	Agent    string `toml:"agent" json:"agent,omitempty"`         // default: [mcp] agent
	Preset   string `toml:"preset" json:"preset,omitempty"`
	Session  string `toml:"session" json:"session,omitempty"` // own session; "" = the rule
}

// Provider is one [providers.<name>] table.
type Provider struct {
	Kind           string `toml:"kind" json:"kind"`
	BaseURL        string `toml:"base_url" json:"base_url,omitempty"`
	APIKeyEnv      string `toml:"api_key_env" json:"api_key_env,omitempty"`
	Script         string `toml:"script" json:"script,omitempty"`
	TimeoutSeconds int    `toml:"timeout_seconds" json:"timeout_seconds,omitempty"`
	MaxRetries     int    `toml:"max_retries" json:"max_retries,omitempty"`
}

// Cost is USD per million tokens.
type Cost struct {
	Input  float64 `toml:"input" json:"input"`
	Output float64 `toml:"output" json:"output"`
}

// Model is one [[models]] entry.
type Model struct {
	ID       string `toml:"id" json:"id"`
	Provider string `toml:"provider" json:"provider"`
	Name     string `toml:"name" json:"name"`
	Cost     Cost   `toml:"cost" json:"cost"`
}

// Agents is [agents].
type Agents struct {
	Defaults AgentDefaults     `toml:"defaults" json:"defaults"`
	List     []Agent           `toml:"list" json:"list"`
	Presets  map[string]Preset `toml:"presets" json:"presets"`
}

// AgentDefaults is [agents.defaults].
type AgentDefaults struct {
	Model         string            `toml:"model" json:"model"`
	MaxIterations int               `toml:"max_iterations" json:"max_iterations"`
	Subagents     SubagentsDefaults `toml:"subagents" json:"subagents"`
	Budget        Budget            `toml:"budget" json:"budget"`
}

// SubagentsDefaults is [agents.defaults.subagents].
type SubagentsDefaults struct {
	Model               string   `toml:"model" json:"model"`
	Thinking            string   `toml:"thinking" json:"thinking"`
	MaxConcurrent       int      `toml:"max_concurrent" json:"max_concurrent"`
	ArchiveAfterMinutes int      `toml:"archive_after_minutes" json:"archive_after_minutes"`
	RunTimeoutSeconds   int      `toml:"run_timeout_seconds" json:"run_timeout_seconds"`
	MaxSpawnDepth       int      `toml:"max_spawn_depth" json:"max_spawn_depth"`
	MaxChildrenPerAgent int      `toml:"max_children_per_agent" json:"max_children_per_agent"`
	AllowAgents         []string `toml:"allow_agents" json:"allow_agents"`
}

// Agent is one [[agents.list]] entry.
type Agent struct {
	ID        string `toml:"id" json:"id"`
	Default   bool   `toml:"default" json:"default"`
	Name      string `toml:"name" json:"name"`
	Preset    string `toml:"preset" json:"preset"`
	Model     string `toml:"model" json:"model"`
	Workspace string `toml:"workspace" json:"workspace"`
	// APIKeys overrides, for this agent's runs, the environment variable
	// that holds a provider's key: provider name → variable name. When the
	// variable is unset or empty the provider's own api_key_env is used.
	APIKeys   map[string]string `toml:"api_keys" json:"api_keys,omitempty"`
	Subagents AgentSubagents    `toml:"subagents" json:"subagents"`
	Budget    Budget            `toml:"budget" json:"budget"`
}

// AgentSubagents is [agents.list.subagents].
type AgentSubagents struct {
	Model       string   `toml:"model" json:"model"`
	Thinking    string   `toml:"thinking" json:"thinking"`
	AllowAgents []string `toml:"allow_agents" json:"allow_agents"`
}

// Preset is one [agents.presets.<name>] table.
type Preset struct {
	Model        string         `toml:"model" json:"model,omitempty"`
	TimeoutSecs  int            `toml:"timeout_secs" json:"timeout_secs,omitempty"`
	Tools        ToolList       `toml:"tools" json:"tools"`
	Sessions     PresetSessions `toml:"sessions" json:"sessions"`
	ToolControls ToolControls   `toml:"tool_controls" json:"tool_controls"`
	Budget       Budget         `toml:"budget" json:"budget"`
}

// ToolList is an allow/deny pair of tool names (kebab or snake case, or toolset.* names).
type ToolList struct {
	Allow []string `toml:"allow" json:"allow"`
	Deny  []string `toml:"deny" json:"deny"`
}

// PresetSessions is a preset's session policy. Nil booleans take their defaults.
type PresetSessions struct {
	KeyPrefix     string   `toml:"key_prefix" json:"key_prefix,omitempty"`
	AllowedKeys   []string `toml:"allowed_keys" json:"allowed_keys,omitempty"`
	CanSend       *bool    `toml:"can_send" json:"can_send,omitempty"`
	CrossAgent    *bool    `toml:"cross_agent" json:"cross_agent,omitempty"`
	CanSendSystem *bool    `toml:"can_send_system" json:"can_send_system,omitempty"`
}

// ToolControls is [...tool_controls].
type ToolControls struct {
	ActiveTools []string    `toml:"active_tools" json:"active_tools,omitempty"`
	ToolChoice  *ToolChoice `toml:"tool_choice" json:"tool_choice,omitempty"`
}

// ToolChoice is {type = "auto|any|none|tool", name}.
type ToolChoice struct {
	Type string `toml:"type" json:"type"`
	Name string `toml:"name" json:"name,omitempty"`
}

// Tools is [tools].
type Tools struct {
	Subagents SubagentTools `toml:"subagents" json:"subagents"`
	Sessions  SessionTools  `toml:"sessions" json:"sessions"`
}

// SubagentTools is [tools.subagents].
type SubagentTools struct {
	Tools ToolList `toml:"tools" json:"tools"`
}

// SessionTools is [tools.sessions].
type SessionTools struct {
	Visibility       string `toml:"visibility" json:"visibility"`
	MaxPingPongTurns int    `toml:"max_ping_pong_turns" json:"max_ping_pong_turns"`
}

// MCPServer is one [[mcp_servers]] entry: tools offered to child agents.
type MCPServer struct {
	Name    string            `toml:"name" json:"name"`
	Command string            `toml:"command" json:"command"`
	Args    []string          `toml:"args" json:"args"`
	Env     map[string]string `toml:"env" json:"env,omitempty"`
}

// Default returns the built-in configuration used when no file is given.
func Default() *Config {
	return &Config{
		Store:     Store{Path: DefaultDBPath()},
		MCP:       MCP{Agent: "main", WorkerPool: 64, DrainSeconds: 10, HTTP: HTTP{SessionIdleMinutes: 30, MaxSessions: 1000}},
		Providers: map[string]Provider{},
		Agents: Agents{
			Defaults: AgentDefaults{
				MaxIterations: 25,
				Subagents: SubagentsDefaults{
					MaxConcurrent:       8,
					ArchiveAfterMinutes: 60,
					MaxSpawnDepth:       1,
					MaxChildrenPerAgent: 5,
				},
			},
			Presets: map[string]Preset{},
		},
		Tools:    Tools{Sessions: SessionTools{Visibility: "all"}},
		Approval: map[string]string{},
		Limits:   DefaultLimits(),
		Cluster:  Cluster{StaleSeconds: DefaultStaleSeconds},
		Cron:     Cron{MinEverySeconds: DefaultMinEverySeconds},
	}
}

// DefaultDBPath is $XDG_DATA_HOME/sessionplane/sessionplane.db, or
// ~/.local/share/sessionplane/sessionplane.db.
func DefaultDBPath() string {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			home = "."
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "sessionplane", "sessionplane.db")
}

// Source is the file this configuration was loaded from, or "" for built-in defaults.
func (c *Config) Source() string { return c.source }

// Line returns the line of a key path in the source file (0 when unknown).
func (c *Config) Line(path string) int { return lineFor(c.lines, path) }

// Agent returns the configured agent with that id, if any.
func (c *Config) Agent(id string) (Agent, bool) {
	for _, a := range c.Agents.List {
		if a.ID == id {
			return a, true
		}
	}
	return Agent{}, false
}

// ModelByID returns the [[models]] entry with that id, if any.
func (c *Config) ModelByID(id string) (Model, bool) {
	for _, m := range c.Models {
		if m.ID == id {
			return m, true
		}
	}
	return Model{}, false
}

// SubagentModel resolves the model a child of agentID runs with when the
// call names none: agent subagents.model > agent model >
// agents.defaults.subagents.model > agents.defaults.model. source names the
// key it came from ("" when nothing is configured).
func (c *Config) SubagentModel(agentID string) (model, source string) {
	for i, a := range c.Agents.List {
		if a.ID != agentID {
			continue
		}
		if a.Subagents.Model != "" {
			return a.Subagents.Model, fmt.Sprintf("agents.list[%d].subagents.model", i)
		}
		if a.Model != "" {
			return a.Model, fmt.Sprintf("agents.list[%d].model", i)
		}
	}
	if c.Agents.Defaults.Subagents.Model != "" {
		return c.Agents.Defaults.Subagents.Model, "agents.defaults.subagents.model"
	}
	if c.Agents.Defaults.Model != "" {
		return c.Agents.Defaults.Model, "agents.defaults.model"
	}
	return "", ""
}
