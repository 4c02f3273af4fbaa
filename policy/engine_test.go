package policy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// known is the tool catalog the tests build engines with (tools.Catalog).
var known = []string{
	"sessions_list", "sessions_history", "sessions_search", "session_status", "agents_list",
	"sessions_send", "sessions_yield", "sessions_spawn", "spawn_agent", "spawn_status", "spawn_result",
	"spawn_list", "cancel_spawn", "subagents", "task_list", "cron",
}

// fakeSessions is a Sessions whose behaviour each test sets through
// function fields; a nil field behaves as an empty store.
type fakeSessions struct {
	owner      func(key string) (string, bool, error)
	descendant func(ancestor, key string) (bool, error)
}

func (f fakeSessions) Owner(_ context.Context, key string) (string, bool, error) {
	if f.owner == nil {
		return "", false, nil
	}
	return f.owner(key)
}

func (f fakeSessions) IsDescendant(_ context.Context, ancestor, key string) (bool, error) {
	if f.descendant == nil {
		return false, nil
	}
	return f.descendant(ancestor, key)
}

// storeOf is a fake store of sessions: key → owner agent, and key → parent.
func storeOf(owners map[string]string, parents map[string]string) fakeSessions {
	return fakeSessions{
		owner: func(key string) (string, bool, error) {
			a, ok := owners[key]
			return a, ok, nil
		},
		descendant: func(ancestor, key string) (bool, error) {
			for p, n := parents[key], 0; p != "" && n < 64; p, n = parents[p], n+1 {
				if p == ancestor {
					return true, nil
				}
			}
			return false, nil
		},
	}
}

var errStore = errors.New("database is locked")

// failing is a store whose every lookup fails.
var failing = fakeSessions{
	owner:      func(string) (string, bool, error) { return "", false, errStore },
	descendant: func(string, string) (bool, error) { return false, errStore },
}

func newEngine(t *testing.T, toml string, s Sessions) *Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e, err := New(cfg, s, known)
	if err != nil {
		t.Fatalf("policy.New: %v", err)
	}
	return e
}

// who describes a caller for a table row; layers are preset names.
type who struct {
	key    string // default agent:main:main
	agent  string // default main
	depth  int
	layers []string
	active []string
}

func (w who) caller(t *testing.T, e *Engine) Caller {
	t.Helper()
	c := Caller{Key: w.key, AgentID: w.agent, Depth: w.depth, Active: w.active, Client: w.depth == 0}
	if c.AgentID == "" {
		c.AgentID = "main"
	}
	if c.Key == "" {
		c.Key = "agent:" + c.AgentID + ":main"
	}
	layers, err := e.Layers(w.layers...)
	if err != nil {
		t.Fatalf("layers %v: %v", w.layers, err)
	}
	c.Layers = layers
	return c
}

// ruleOf is "" for an allowed decision and the rule otherwise ("ask:<mode>"
// for a call that needs approval).
func ruleOf(d Decision) string {
	switch d.Effect {
	case Allow:
		return ""
	case Ask:
		return "ask:" + d.Mode
	}
	if d.Rule == "" {
		return "deny without a rule"
	}
	return d.Rule
}

const twoPresets = `
[agents.presets.reader]
tools.allow = ["sessions_list", "sessions_history", "session_status"]
[agents.presets.narrow]
tools.allow = ["sessions_history", "session_status", "sessions_search"]
[agents.presets.nohistory]
tools.deny = ["sessions_history"]
[agents.presets.both]
tools.allow = ["sessions_send"]
tools.deny = ["sessions_send"]
[agents.presets.kebab]
tools.allow = ["sessions-list", "session-status", "sessions_send"]
tools.deny = ["sessions-send"]
[agents.presets.starter]
tools.allow = ["toolset.starter-read"]
[agents.presets.nowrite]
tools.deny = ["toolset.controlled-write", "toolset.workflow_operator"]
[agents.presets.nofs]
tools.deny = ["fs__*"]
[agents.presets.fsread]
tools.allow = ["fs__read_file", "my-git__*"]
[agents.presets.plain]
model = ""
[[mcp_servers]]
name = "fs"
command = "fs-server"
[[mcp_servers]]
name = "my-git"
command = "git-server"
`

func TestToolDecisionLayers(t *testing.T) {
	e := newEngine(t, twoPresets, storeOf(nil, nil))
	tests := []struct {
		name string
		who  who
		tool string
		want string // rule, "" = allowed
	}{
		{"no preset allows everything", who{}, "sessions_send", ""},
		{"no preset allows a server tool", who{}, "fs__write_file", ""},
		{"preset without tool lists allows", who{layers: []string{"plain"}}, "cron", ""},
		{"allow list lets its tools through", who{layers: []string{"reader"}}, "sessions_history", ""},
		{"allow list is allow-only", who{layers: []string{"reader"}}, "sessions_search", "tools.allow"},
		{"deny list refuses", who{layers: []string{"nohistory"}}, "sessions_history", "tools.deny"},
		{"deny list leaves the rest", who{layers: []string{"nohistory"}}, "sessions_list", ""},
		{"deny wins over allow in one preset", who{layers: []string{"both"}}, "sessions_send", "tools.deny"},
		{"two layers: allowed by both", who{layers: []string{"reader", "narrow"}}, "sessions_history", ""},
		{"two layers: allow-only in the second", who{layers: []string{"reader", "narrow"}}, "sessions_list", "tools.allow"},
		{"two layers: allow-only in the first", who{layers: []string{"reader", "narrow"}}, "sessions_search", "tools.allow"},
		{"two layers: deny in the second wins over allow in the first", who{layers: []string{"reader", "nohistory"}}, "sessions_history", "tools.deny"},
		{"two layers: deny in the first wins", who{layers: []string{"nohistory", "reader"}}, "sessions_history", "tools.deny"},
		{"two layers: deny reported before another layer's allow-only", who{layers: []string{"narrow", "nohistory"}}, "sessions_history", "tools.deny"},
		{"kebab in allow matches snake call", who{layers: []string{"kebab"}}, "session_status", ""},
		{"kebab in allow matches kebab call", who{layers: []string{"kebab"}}, "sessions-list", ""},
		{"kebab in deny matches snake call", who{layers: []string{"kebab"}}, "sessions_send", "tools.deny"},
		{"kebab call of a denied tool", who{layers: []string{"nohistory"}}, "sessions-history", "tools.deny"},
		{"kebab call outside allow list", who{layers: []string{"kebab"}}, "sessions-search", "tools.allow"},
		{"toolset.starter-read: list", who{layers: []string{"starter"}}, "sessions_list", ""},
		{"toolset.starter-read: history", who{layers: []string{"starter"}}, "sessions_history", ""},
		{"toolset.starter-read: status", who{layers: []string{"starter"}}, "session_status", ""},
		{"toolset.starter-read: search is not in it", who{layers: []string{"starter"}}, "sessions_search", "tools.allow"},
		{"toolset.controlled-write: send", who{layers: []string{"nowrite"}}, "sessions_send", "tools.deny"},
		{"toolset.controlled-write: yield", who{layers: []string{"nowrite"}}, "sessions_yield", "tools.deny"},
		{"toolset.workflow_operator: spawn", who{layers: []string{"nowrite"}}, "sessions_spawn", "tools.deny"},
		{"toolset.workflow_operator: subagents", who{layers: []string{"nowrite"}}, "subagents", "tools.deny"},
		{"toolsets leave other tools", who{layers: []string{"nowrite"}}, "spawn_agent", ""},
		{"<server>__* denies the server's tools", who{layers: []string{"nofs"}}, "fs__read_file", "tools.deny"},
		{"<server>__* leaves built-ins", who{layers: []string{"nofs"}}, "sessions_list", ""},
		{"<server>__* is not a bare prefix", who{layers: []string{"nofs"}}, "fsx__read_file", ""},
		{"<server>__* needs the double underscore", who{layers: []string{"nofs"}}, "fs_read_file", ""},
		{"allow of one server tool", who{layers: []string{"fsread"}}, "fs__read_file", ""},
		{"allow of one server tool is allow-only", who{layers: []string{"fsread"}}, "fs__write_file", "tools.allow"},
		{"kebab server name with wildcard", who{layers: []string{"fsread"}}, "my-git__log", ""},
		{"kebab server name, snake call", who{layers: []string{"fsread"}}, "my_git__log", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.who.caller(t, e)
			d := e.ToolDecision(c, tt.tool, ClassRead)
			if got := ruleOf(d); got != tt.want {
				t.Fatalf("ToolDecision(%s) = %q (%s), want %q", tt.tool, got, d.Message, tt.want)
			}
			if d.Effect == Deny && (d.Hint == "" || !strings.Contains(d.Message, d.Hint)) {
				t.Errorf("refusal hint %q is not named in the message %q", d.Hint, d.Message)
			}
			// Decide must agree with the tool-level decision (no targets, class none).
			if got := ruleOf(e.Decide(context.Background(), c, tt.tool, ClassRead, Targets{})); got != tt.want {
				t.Errorf("Decide(%s) = %q, want %q", tt.tool, got, tt.want)
			}
		})
	}
}

func TestToolDecisionHintNamesTheLayer(t *testing.T) {
	e := newEngine(t, twoPresets, storeOf(nil, nil))
	tests := []struct {
		layers []string
		tool   string
		want   string
	}{
		{[]string{"reader", "nohistory"}, "sessions_history", "agents.presets.nohistory.tools.deny"},
		{[]string{"reader", "narrow"}, "sessions_list", "agents.presets.narrow.tools.allow"},
		{[]string{"reader", "narrow"}, "sessions_search", "agents.presets.reader.tools.allow"},
	}
	for _, tt := range tests {
		d := e.ToolDecision(who{layers: tt.layers}.caller(t, e), tt.tool, ClassRead)
		if got := d.Hint; got != tt.want {
			t.Errorf("%v %s: hint %q, want %q", tt.layers, tt.tool, got, tt.want)
		}
	}
}

func TestToolDecisionSubagents(t *testing.T) {
	const depth1 = `
[agents.defaults.subagents]
max_spawn_depth = 1
[agents.presets.parent]
tools.deny = ["task_list"]
[agents.presets.child]
tools.allow = ["task_list", "sessions_yield"]
`
	const depth2 = `
[agents.defaults.subagents]
max_spawn_depth = 2
`
	const depth3 = `
[agents.defaults.subagents]
max_spawn_depth = 3
`
	const subDeny = `
[agents.defaults.subagents]
max_spawn_depth = 2
[tools.subagents.tools]
deny = ["task-list", "spawn_agent"]
`
	const subAllow = `
[agents.defaults.subagents]
max_spawn_depth = 2
[tools.subagents.tools]
allow = ["task_list", "sessions-list", "sessions_spawn", "subagents"]
`
	tests := []struct {
		name  string
		toml  string
		who   who
		tool  string
		want  string
		wantH string // hint, when checked
	}{
		// depth 0 (the MCP client, a main session): the sub-agent set does not apply.
		{"main session lists", depth1, who{}, "sessions_list", "", ""},
		{"main session spawns", depth1, who{}, "sessions_spawn", "", ""},
		{"main session runs cron", depth1, who{}, "cron", "", ""},
		// leaf: depth 1 with max_spawn_depth 1.
		{"leaf: sessions_list", depth1, who{depth: 1}, "sessions_list", "subagents.default_deny", ""},
		{"leaf: sessions_history", depth1, who{depth: 1}, "sessions_history", "subagents.default_deny", ""},
		{"leaf: sessions_send", depth1, who{depth: 1}, "sessions_send", "subagents.default_deny", ""},
		{"leaf: sessions_spawn", depth1, who{depth: 1}, "sessions_spawn", "subagents.default_deny", "agents.defaults.subagents.max_spawn_depth"},
		{"leaf: spawn_agent", depth1, who{depth: 1}, "spawn_agent", "subagents.default_deny", "agents.defaults.subagents.max_spawn_depth"},
		{"leaf: spawn-agent (kebab)", depth1, who{depth: 1}, "spawn-agent", "subagents.default_deny", ""},
		{"leaf: agents_list", depth1, who{depth: 1}, "agents_list", "subagents.default_deny", ""},
		{"leaf: session_status", depth1, who{depth: 1}, "session_status", "subagents.default_deny", ""},
		{"leaf: cron", depth1, who{depth: 1}, "cron", "subagents.default_deny", ""},
		{"leaf: subagents (control)", depth1, who{depth: 1}, "subagents", "subagents.default_deny", ""},
		{"leaf: spawn_status (control)", depth1, who{depth: 1}, "spawn_status", "subagents.default_deny", ""},
		{"leaf: cancel_spawn (control)", depth1, who{depth: 1}, "cancel_spawn", "subagents.default_deny", ""},
		{"leaf: sessions_search is not in the set", depth1, who{depth: 1}, "sessions_search", "", ""},
		{"leaf: sessions_yield", depth1, who{depth: 1}, "sessions_yield", "", ""},
		{"leaf: task_list", depth1, who{depth: 1}, "task_list", "", ""},
		{"leaf: server tool", depth1, who{depth: 1}, "fs__read", "", ""},
		// orchestrator: depth 1 with max_spawn_depth 2.
		{"orchestrator: sessions_spawn", depth2, who{depth: 1}, "sessions_spawn", "", ""},
		{"orchestrator: spawn_agent", depth2, who{depth: 1}, "spawn_agent", "", ""},
		{"orchestrator: subagents", depth2, who{depth: 1}, "subagents", "", ""},
		{"orchestrator: spawn_result", depth2, who{depth: 1}, "spawn_result", "", ""},
		{"orchestrator: still no sessions_list", depth2, who{depth: 1}, "sessions_list", "subagents.default_deny", ""},
		{"orchestrator: still no sessions_send", depth2, who{depth: 1}, "sessions_send", "subagents.default_deny", ""},
		{"orchestrator: still no agents_list", depth2, who{depth: 1}, "agents_list", "subagents.default_deny", ""},
		{"orchestrator: still no cron", depth2, who{depth: 1}, "cron", "subagents.default_deny", ""},
		// depth 2 with max_spawn_depth 2 is a leaf; with 3 an orchestrator.
		{"depth 2 of 2 is a leaf", depth2, who{depth: 2}, "sessions_spawn", "subagents.default_deny", ""},
		{"depth 2 of 2 may not control", depth2, who{depth: 2}, "spawn_list", "subagents.default_deny", ""},
		{"depth 2 of 3 is an orchestrator", depth3, who{depth: 2}, "sessions_spawn", "", ""},
		{"depth 3 of 3 is a leaf", depth3, who{depth: 3}, "spawn_agent", "subagents.default_deny", ""},
		// tools.subagents.tools.deny adds to the set.
		{"subagent deny: task_list (kebab in config)", subDeny, who{depth: 1}, "task_list", "tools.subagents.tools.deny", "tools.subagents.tools.deny"},
		{"subagent deny: beats orchestrator spawn", subDeny, who{depth: 1}, "spawn_agent", "tools.subagents.tools.deny", ""},
		{"subagent deny: orchestrator keeps sessions_spawn", subDeny, who{depth: 1}, "sessions_spawn", "", ""},
		{"subagent deny: default set still applies", subDeny, who{depth: 1}, "sessions_list", "subagents.default_deny", ""},
		{"subagent deny: not for the main session", subDeny, who{}, "task_list", "", ""},
		// a non-empty tools.subagents.tools.allow is allow-only, the default set on top.
		{"subagent allow: listed", subAllow, who{depth: 1}, "task_list", "", ""},
		{"subagent allow: not listed", subAllow, who{depth: 1}, "sessions_yield", "tools.subagents.tools.allow", "tools.subagents.tools.allow"},
		{"subagent allow: default set on top", subAllow, who{depth: 1}, "sessions_list", "subagents.default_deny", ""},
		{"subagent allow: orchestrator spawn listed", subAllow, who{depth: 1}, "sessions_spawn", "", ""},
		{"subagent allow: orchestrator spawn_agent not listed", subAllow, who{depth: 1}, "spawn_agent", "tools.subagents.tools.allow", ""},
		{"subagent allow: leaf spawn listed but default set", subAllow, who{depth: 2}, "sessions_spawn", "subagents.default_deny", ""},
		{"subagent allow: not for the main session", subAllow, who{}, "sessions_yield", "", ""},
		// a child is bound by its parent's layers and its own (intersection).
		{"child: parent's deny", depth1, who{depth: 1, layers: []string{"parent", "child"}}, "task_list", "tools.deny", "agents.presets.parent.tools.deny"},
		{"child: own allow-only", depth1, who{depth: 1, layers: []string{"parent", "child"}}, "sessions_search", "tools.allow", "agents.presets.child.tools.allow"},
		{"child: allowed by both", depth1, who{depth: 1, layers: []string{"parent", "child"}}, "sessions_yield", "", ""},
		{"child: its own allow cannot lift the default set", depth1, who{depth: 1, layers: []string{"child"}}, "sessions_list", "tools.allow", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, tt.toml, storeOf(nil, nil))
			d := e.ToolDecision(tt.who.caller(t, e), tt.tool, ClassRead)
			if got := ruleOf(d); got != tt.want {
				t.Fatalf("got %q (%s), want %q", got, d.Message, tt.want)
			}
			if tt.wantH != "" && d.Hint != tt.wantH {
				t.Errorf("hint %q, want %q", d.Hint, tt.wantH)
			}
			if d.Effect == Deny && !strings.Contains(d.Message, Canonical(tt.tool)) {
				t.Errorf("message %q does not name the tool", d.Message)
			}
		})
	}
}

func TestToolDecisionActiveTools(t *testing.T) {
	const toml = `
[agents.presets.nocron]
tools.deny = ["cron", "task_list"]
`
	e := newEngine(t, toml, storeOf(nil, nil))
	tests := []struct {
		name string
		who  who
		tool string
		want string
	}{
		{"nil active: no filter", who{depth: 1}, "task_list", ""},
		{"in the active set", who{depth: 1, active: []string{"task_list", "sessions_yield"}}, "task_list", ""},
		{"hidden tool called by the model", who{depth: 1, active: []string{"sessions_yield"}}, "task_list", "tool_controls.active_tools"},
		{"empty active set: nothing may be called", who{depth: 1, active: []string{}}, "sessions_yield", "tool_controls.active_tools"},
		{"kebab active entry", who{depth: 1, active: []string{"task-list"}}, "task_list", ""},
		{"toolset in the active set", who{depth: 1, active: []string{"toolset.controlled-write"}}, "sessions_yield", ""},
		{"active set cannot force a tools.deny tool", who{depth: 1, layers: []string{"nocron"}, active: []string{"task_list"}}, "task_list", "tools.deny"},
		{"active set cannot lift the default deny set", who{depth: 1, active: []string{"sessions_list"}}, "sessions_list", "subagents.default_deny"},
		{"active set applies to the main session too", who{active: []string{"sessions_list"}}, "sessions_history", "tool_controls.active_tools"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.ToolDecision(tt.who.caller(t, e), tt.tool, ClassMutate)
			if got := ruleOf(d); got != tt.want {
				t.Fatalf("got %q (%s), want %q", got, d.Message, tt.want)
			}
		})
	}
}

func TestApprovalModes(t *testing.T) {
	tests := []struct {
		name  string
		toml  string
		class Class
		want  string // ruleOf(Decide)
		list  bool   // the tool is listed (ToolDecision allows)
	}{
		{"default read: none", ``, ClassRead, "", true},
		{"default mutate: none", ``, ClassMutate, "", true},
		{"default spawn: auto", ``, ClassSpawn, "ask:auto", true},
		{"read none", "[approval]\nread-session = \"none\"", ClassRead, "", true},
		{"read auto", "[approval]\nread-session = \"auto\"", ClassRead, "ask:auto", true},
		{"read elicit", "[approval]\nread-session = \"elicit\"", ClassRead, "ask:elicit", true},
		{"read deny", "[approval]\nread-session = \"deny\"", ClassRead, "approval.read-session", false},
		{"read deny leaves mutate", "[approval]\nread-session = \"deny\"", ClassMutate, "", true},
		{"mutate elicit", "[approval]\nmutate-session = \"elicit\"", ClassMutate, "ask:elicit", true},
		{"spawn none", "[approval]\nspawn-subagent = \"none\"", ClassSpawn, "", true},
		{"spawn deny", "[approval]\nspawn-subagent = \"deny\"", ClassSpawn, "approval.spawn-subagent", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, tt.toml, storeOf(nil, nil))
			c := who{}.caller(t, e)
			d := e.Decide(context.Background(), c, "sessions_list", tt.class, Targets{})
			if got := ruleOf(d); got != tt.want {
				t.Fatalf("Decide = %q (%s), want %q", got, d.Message, tt.want)
			}
			if d.Effect == Ask && (d.Rule != "approval."+string(tt.class) || d.Hint != "[approval] "+string(tt.class)) {
				t.Errorf("ask rule %q hint %q", d.Rule, d.Hint)
			}
			if d.Effect == Deny && !strings.Contains(d.Message, "[approval]") {
				t.Errorf("message %q does not name [approval]", d.Message)
			}
			if got := e.ToolDecision(c, "sessions_list", tt.class).Allowed(); got != tt.list {
				t.Errorf("listed = %v, want %v", got, tt.list)
			}
		})
	}
	// An unknown mode (a config not from Parse) fails closed.
	cfg := config.Default()
	cfg.Approval["read-session"] = "maybe"
	e, err := New(cfg, storeOf(nil, nil), known)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleOf(e.Decide(context.Background(), Caller{Key: "agent:main:main", AgentID: "main"}, "sessions_list", ClassRead, Targets{})); got != "policy.error" {
		t.Errorf("unknown approval mode: %q, want policy.error", got)
	}
}

const accessPresets = `
[agents.presets.research]
sessions.key_prefix = "agent:research:"
sessions.cross_agent = true
[agents.presets.research-own]
sessions.key_prefix = "agent:research:"
[agents.presets.notes]
sessions.key_prefix = "agent:research:"
sessions.allowed_keys = ["agent:main:notes", "agent:other:shared"]
sessions.cross_agent = true
[agents.presets.shared]
sessions.allowed_keys = ["agent:other:shared"]
[agents.presets.plain]
model = ""
[agents.presets.nocross]
sessions.cross_agent = false
[agents.presets.cross]
sessions.cross_agent = true
[agents.presets.mainonly]
sessions.key_prefix = "agent:main:"
sessions.cross_agent = true
[agents.presets.projects]
sessions.key_prefix = "agent:main:proj"
`

func TestAccess(t *testing.T) {
	owners := map[string]string{
		"agent:main:main":                  "main",
		"agent:main:notes":                 "main",
		"agent:main:x":                     "main",
		"agent:main:proj1":                 "main",
		"agent:main:imported":              "other", // stored owner differs from the key
		"agent:other:adopted":              "main",  // and the other way round
		"agent:research:x":                 "research",
		"agent:other:x":                    "other",
		"agent:other:shared":               "other",
		"cron:nightly":                     "",
		"agent:main:subagent:1":            "main",
		"agent:main:subagent:1:subagent:2": "main",
	}
	parents := map[string]string{
		"agent:main:subagent:1":            "agent:main:main",
		"agent:main:subagent:1:subagent:2": "agent:main:subagent:1",
	}
	child := "agent:main:subagent:1"
	long := "agent:main:" + strings.Repeat("x", 502) // 513 bytes
	tests := []struct {
		name string
		vis  string // tools.sessions.visibility ("" = default)
		who  who
		key  string
		want string
	}{
		// no presets: everything is visible, whoever owns it.
		{"no preset: own agent", "", who{}, "agent:main:x", ""},
		{"no preset: other agent (no cross_agent restriction)", "", who{}, "agent:other:x", ""},
		{"no preset: cron session", "", who{}, "cron:nightly", ""},
		{"no preset: unknown session", "", who{}, "agent:other:ghost", ""},
		// invalid keys are refused before anything else, with or without presets.
		{"empty key", "", who{}, "", "sessions.key"},
		{"key over 512", "", who{}, long, "sessions.key"},
		{"key of 512", "", who{}, long[:512], ""},
		{"leading space", "", who{}, " agent:main:x", "sessions.key"},
		{"trailing space", "", who{}, "agent:main:x ", "sessions.key"},
		{"tab", "", who{}, "agent:main:\tx", "sessions.key"},
		{"newline", "", who{}, "agent:main:x\n", "sessions.key"},
		{"Cyrillic а in agent", "", who{}, "\u0430gent:main:main", "sessions.key"},
		{"Cyrillic е in id", "", who{layers: []string{"research"}}, "agent:r\u0435search:x", "sessions.key"},
		{"zero-width space", "", who{}, "agent:main:\u200bx", "sessions.key"},
		{"fullwidth colon", "", who{}, "agent\uff1amain:x", "sessions.key"},
		{"NUL", "", who{}, "agent:main:\x00", "sessions.key"},
		// key_prefix is an exact, case-sensitive string prefix.
		{"prefix: inside", "", who{layers: []string{"research"}}, "agent:research:x", ""},
		{"prefix: unknown key inside", "", who{layers: []string{"research"}}, "agent:research:new", ""},
		{"prefix: longer agent id", "", who{layers: []string{"research"}}, "agent:researcher:x", "sessions.key_prefix"},
		{"prefix: without the colon", "", who{layers: []string{"research"}}, "agent:research", "sessions.key_prefix"},
		{"prefix: upper-case AGENT", "", who{layers: []string{"research"}}, "AGENT:research:x", "sessions.key_prefix"},
		{"prefix: upper-case agent id", "", who{layers: []string{"research"}}, "agent:Research:x", "sessions.key_prefix"},
		{"prefix: leading space", "", who{layers: []string{"research"}}, " agent:research:x", "sessions.key"},
		{"prefix: trailing space", "", who{layers: []string{"research"}}, "agent:research:x ", "sessions.key"},
		{"prefix: path-like segment is a literal key", "", who{layers: []string{"research"}}, "agent:research:../main", ""},
		{"prefix: other session of the caller's agent", "", who{layers: []string{"research"}}, "agent:main:x", "sessions.key_prefix"},
		{"prefix: own session by key", "", who{layers: []string{"research"}}, "agent:main:main", ""},
		{"prefix: alias current is the caller", "", who{layers: []string{"research"}}, "current", ""},
		{"prefix: alias main is the caller", "", who{layers: []string{"research"}}, "main", ""},
		{"prefix: a child's alias main is not itself", "", who{key: child, depth: 1, layers: []string{"research"}}, "main", "sessions.key_prefix"},
		{"prefix: a child's alias current is itself", "", who{key: child, depth: 1, layers: []string{"research"}}, "current", ""},
		// allowed_keys beats key_prefix (and cross_agent) in its layer.
		{"allowed_keys beats key_prefix", "", who{layers: []string{"notes"}}, "agent:main:notes", ""},
		{"allowed_keys is exact", "", who{layers: []string{"notes"}}, "agent:main:notes2", "sessions.key_prefix"},
		{"allowed_keys: prefix still applies to others", "", who{layers: []string{"notes"}}, "agent:research:x", ""},
		{"allowed_keys beats cross_agent", "", who{layers: []string{"shared"}}, "agent:other:shared", ""},
		{"allowed_keys: other keys of that agent", "", who{layers: []string{"shared"}}, "agent:other:x", "sessions.cross_agent"},
		{"allowed_keys does not beat another layer", "", who{layers: []string{"shared", "mainonly"}}, "agent:other:shared", "sessions.key_prefix"},
		{"allowed_keys does not beat visibility", "agent", who{layers: []string{"shared"}}, "agent:other:shared", "tools.sessions.visibility"},
		// cross_agent: default false inside a preset.
		{"cross_agent unset in a preset", "", who{layers: []string{"plain"}}, "agent:other:x", "sessions.cross_agent"},
		{"cross_agent unset: own agent", "", who{layers: []string{"plain"}}, "agent:main:x", ""},
		{"cross_agent unset: unknown key of another agent", "", who{layers: []string{"plain"}}, "agent:other:ghost", "sessions.cross_agent"},
		{"cross_agent unset: stored owner is another agent", "", who{layers: []string{"plain"}}, "agent:main:imported", "sessions.cross_agent"},
		{"cross_agent unset: key names another agent", "", who{layers: []string{"plain"}}, "agent:research:x", "sessions.cross_agent"},
		{"cross_agent unset: key names another agent, stored owner is the caller", "", who{layers: []string{"plain"}}, "agent:other:adopted", "sessions.cross_agent"},
		{"cross_agent unset: session with no agent", "", who{layers: []string{"plain"}}, "cron:nightly", ""},
		{"cross_agent = false", "", who{layers: []string{"nocross"}}, "agent:other:x", "sessions.cross_agent"},
		{"cross_agent = true", "", who{layers: []string{"cross"}}, "agent:other:x", ""},
		{"key_prefix without cross_agent", "", who{layers: []string{"research-own"}}, "agent:research:x", "sessions.cross_agent"},
		{"key_prefix without cross_agent, caller of that agent", "", who{agent: "research", layers: []string{"research-own"}}, "agent:research:x", ""},
		// two layers: the intersection.
		{"two layers: inside both prefixes", "", who{layers: []string{"mainonly", "projects"}}, "agent:main:proj1", ""},
		{"two layers: outside the narrower prefix", "", who{layers: []string{"mainonly", "projects"}}, "agent:main:x", "sessions.key_prefix"},
		{"two layers: cross_agent in one only", "", who{layers: []string{"cross", "plain"}}, "agent:other:x", "sessions.cross_agent"},
		// visibility narrows it for everyone.
		{"visibility all", "all", who{}, "agent:other:x", ""},
		{"visibility unset is all", "", who{}, "agent:other:x", ""},
		{"visibility self: other session", "self", who{}, "agent:main:x", "tools.sessions.visibility"},
		{"visibility self: own session", "self", who{}, "agent:main:main", ""},
		{"visibility self: current", "self", who{}, "current", ""},
		{"visibility tree: child", "tree", who{}, child, ""},
		{"visibility tree: grandchild", "tree", who{}, child + ":subagent:2", ""},
		{"visibility tree: unrelated", "tree", who{}, "agent:main:x", "tools.sessions.visibility"},
		{"visibility tree: a child does not see its parent", "tree", who{key: child, depth: 1}, "agent:main:main", "tools.sessions.visibility"},
		{"visibility tree: a child sees its own child", "tree", who{key: child, depth: 1}, child + ":subagent:2", ""},
		{"visibility agent: own agent", "agent", who{}, "agent:main:x", ""},
		{"visibility agent: other agent", "agent", who{}, "agent:other:x", "tools.sessions.visibility"},
		{"visibility agent: stored owner other", "agent", who{}, "agent:main:imported", "tools.sessions.visibility"},
		{"visibility agent: session with no agent", "agent", who{}, "cron:nightly", "tools.sessions.visibility"},
		{"visibility after presets", "self", who{layers: []string{"research"}}, "agent:researcher:x", "sessions.key_prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toml := accessPresets
			if tt.vis != "" {
				toml += "[tools.sessions]\nvisibility = \"" + tt.vis + "\"\n"
			}
			e := newEngine(t, toml, storeOf(owners, parents))
			c := tt.who.caller(t, e)
			d := e.Access(context.Background(), c, tt.key)
			if got := ruleOf(d); got != tt.want {
				t.Fatalf("Access(%q) = %q (%s), want %q", tt.key, got, d.Message, tt.want)
			}
			if d.Effect == Deny && d.Rule != "sessions.key" && !strings.Contains(d.Message, d.Hint) && d.Hint != "tools.sessions.visibility" {
				t.Errorf("message %q does not name the hint %q", d.Message, d.Hint)
			}
			if d.Effect == Deny && d.Rule == "tools.sessions.visibility" && !strings.Contains(d.Message, "tools.sessions.visibility") {
				t.Errorf("message %q does not name tools.sessions.visibility", d.Message)
			}
			// Decide applies the same check to every session the call names.
			// (sessions_search: a tool outside the sub-agent deny set, so
			// child callers reach the session checks.)
			for _, tg := range []Targets{{Read: []string{tt.key}}, {Read: []string{"current", tt.key}}} {
				if got := ruleOf(e.Decide(context.Background(), c, "sessions_search", ClassRead, tg)); got != tt.want {
					t.Errorf("Decide(read %v) = %q, want %q", tg.Read, got, tt.want)
				}
			}
		})
	}
}

func TestAccessHintNamesTheLayer(t *testing.T) {
	e := newEngine(t, accessPresets, storeOf(map[string]string{"agent:main:x": "main", "agent:other:x": "other"}, nil))
	tests := []struct {
		layers []string
		key    string
		want   string
	}{
		{[]string{"mainonly", "projects"}, "agent:main:x", "agents.presets.projects.sessions.key_prefix"},
		{[]string{"cross", "plain"}, "agent:other:x", "agents.presets.plain.sessions.cross_agent"},
	}
	for _, tt := range tests {
		d := e.Access(context.Background(), who{layers: tt.layers}.caller(t, e), tt.key)
		if d.Hint != tt.want || !strings.Contains(d.Message, strings.TrimSuffix(tt.want, ".sessions.key_prefix")) {
			t.Errorf("%v %s: hint %q message %q, want hint %q", tt.layers, tt.key, d.Hint, d.Message, tt.want)
		}
	}
}

// Anything that cannot be evaluated is denied (rule policy.error).
func TestFailClosed(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		vis  string
		s    Sessions
		key  string
		want string
	}{
		{"owner lookup fails", "all", failing, "agent:main:x", "policy.error"},
		{"owner lookup fails, no presets, any key", "all", failing, "agent:other:x", "policy.error"},
		{"ancestry lookup fails (tree)", "tree", fakeSessions{descendant: failing.descendant}, "agent:main:x", "policy.error"},
		{"the caller's own session needs no lookup", "all", failing, "agent:main:main", ""},
		{"alias current needs no lookup", "tree", failing, "current", ""},
		{"no session store", "all", nil, "agent:main:x", "policy.error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, "[tools.sessions]\nvisibility = \""+tt.vis+"\"\n", tt.s)
			c := who{}.caller(t, e)
			d := e.Access(ctx, c, tt.key)
			if got := ruleOf(d); got != tt.want {
				t.Fatalf("Access = %q (%s), want %q", got, d.Message, tt.want)
			}
			if tt.want != "" && !strings.Contains(d.Message, "denied") {
				t.Errorf("message %q does not say it was denied", d.Message)
			}
			for _, tg := range []Targets{{Read: []string{tt.key}}, {Write: []string{tt.key}}} {
				if got := ruleOf(e.Decide(ctx, c, "sessions_send", ClassMutate, tg)); got != tt.want {
					t.Errorf("Decide(%+v) = %q, want %q", tg, got, tt.want)
				}
			}
		})
	}
	// An unset visibility (a config not from Parse) is the default, all.
	cfg0 := config.Default()
	cfg0.Tools.Sessions.Visibility = ""
	e0, err := New(cfg0, storeOf(nil, nil), known)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleOf(e0.Access(ctx, Caller{Key: "agent:main:main", AgentID: "main"}, "agent:other:x")); got != "" {
		t.Errorf("unset visibility: %q, want allowed", got)
	}
	// A visibility value that did not come through Parse fails closed.
	cfg := config.Default()
	cfg.Tools.Sessions.Visibility = "everyone"
	e, err := New(cfg, storeOf(nil, nil), known)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleOf(e.Access(ctx, Caller{Key: "agent:main:main", AgentID: "main"}, "agent:main:x")); got != "policy.error" {
		t.Errorf("unknown visibility: %q, want policy.error", got)
	}
}

func TestDecide(t *testing.T) {
	const toml = `
[agents.defaults.subagents]
max_spawn_depth = 2
allow_agents = ["helper"]
[[agents.list]]
id = "main"
[agents.list.subagents]
allow_agents = ["researcher"]
[[agents.list]]
id = "any"
[agents.list.subagents]
allow_agents = ["*"]
[[agents.list]]
id = "none"
[agents.list.subagents]
allow_agents = []
[agents.presets.mute]
sessions.can_send = false
[agents.presets.talk]
sessions.can_send = true
[agents.presets.system]
sessions.can_send_system = true
[agents.presets.nosystem]
sessions.can_send_system = false
[agents.presets.research]
sessions.key_prefix = "agent:research:"
sessions.cross_agent = true
sessions.can_send = false
[agents.presets.nosend]
tools.deny = ["sessions_send"]
[agents.presets.yieldonly]
tools.allow = ["sessions_yield"]
[approval]
mutate-session = "elicit"
`
	owners := map[string]string{"agent:main:x": "main", "agent:other:x": "other", "agent:research:x": "research"}
	child := "agent:main:subagent:1"
	grandchild := child + ":subagent:2"
	tests := []struct {
		name   string
		who    who
		tool   string
		class  Class
		t      Targets
		want   string
		wantIn string // a substring of the message, when checked
	}{
		{"read, no targets", who{}, "sessions_list", ClassRead, Targets{}, "", ""},
		{"read an allowed session", who{}, "sessions_history", ClassRead, Targets{Read: []string{"agent:main:x"}}, "", ""},
		{"read outside key_prefix", who{layers: []string{"research"}}, "sessions_history", ClassRead, Targets{Read: []string{"agent:main:x"}}, "sessions.key_prefix", "agents.presets.research.sessions.key_prefix"},
		{"tool refusal comes before target checks", who{layers: []string{"nosend"}}, "sessions_send", ClassMutate, Targets{Write: []string{" bad"}, Role: "system"}, "tools.deny", ""},
		// send rights.
		{"send: no presets", who{}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:other:x"}}, "ask:elicit", ""},
		{"send: can_send default true", who{layers: []string{"system"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}}, "ask:elicit", ""},
		{"send: can_send = true", who{layers: []string{"talk"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}}, "ask:elicit", ""},
		{"send: can_send = false", who{layers: []string{"mute"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}}, "sessions.can_send", "agents.presets.mute.sessions.can_send"},
		{"send: can_send = false in one of two layers", who{layers: []string{"talk", "mute"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}}, "sessions.can_send", ""},
		{"send: access checked before can_send", who{layers: []string{"research"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}}, "sessions.key_prefix", ""},
		{"send: invalid key", who{}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x\u00a0"}}, "sessions.key", ""},
		{"send: to oneself", who{layers: []string{"research"}}, "sessions_send", ClassMutate, Targets{Write: []string{"current"}}, "sessions.can_send", ""},
		// role=system needs an explicit grant, even with no presets.
		{"system: no presets", who{}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}, Role: "system"}, "sessions.can_send_system", "can_send_system = true"},
		{"system: preset without the key", who{layers: []string{"talk"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}, Role: "system"}, "sessions.can_send_system", "agents.presets.talk.sessions.can_send_system"},
		{"system: can_send_system = false", who{layers: []string{"nosystem"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}, Role: "system"}, "sessions.can_send_system", ""},
		{"system: granted", who{layers: []string{"system"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}, Role: "system"}, "ask:elicit", ""},
		{"system: granted by one of two layers", who{layers: []string{"system", "talk"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}, Role: "system"}, "sessions.can_send_system", "agents.presets.talk"},
		{"system: granted but can_send = false", who{layers: []string{"system", "mute"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}, Role: "system"}, "sessions.can_send", ""},
		{"system: role without a write target", who{}, "sessions_spawn", ClassSpawn, Targets{Role: "system"}, "sessions.can_send_system", ""},
		{"user role: no presets", who{}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:x"}, Role: "user"}, "ask:elicit", ""},
		{"system role injected by a child", who{key: child, depth: 1, layers: []string{"system"}}, "sessions_send", ClassMutate, Targets{Write: []string{"agent:main:main"}, Role: "system"}, "subagents.default_deny", ""},
		// cross-agent spawn: allow_agents per agent overrides the defaults.
		{"spawn: own agent", who{}, "sessions_spawn", ClassSpawn, Targets{Agent: "main"}, "ask:auto", ""},
		{"spawn: empty agent is the caller's", who{}, "sessions_spawn", ClassSpawn, Targets{}, "ask:auto", ""},
		{"spawn: agent allowed by its own list", who{}, "sessions_spawn", ClassSpawn, Targets{Agent: "researcher"}, "ask:auto", ""},
		{"spawn: per-agent list overrides the defaults", who{}, "sessions_spawn", ClassSpawn, Targets{Agent: "helper"}, "subagents.allow_agents", "agents.list[0].subagents.allow_agents"},
		{"spawn: unlisted agent falls back to defaults", who{agent: "coder"}, "sessions_spawn", ClassSpawn, Targets{Agent: "helper"}, "ask:auto", ""},
		{"spawn: defaults refuse others", who{agent: "coder"}, "sessions_spawn", ClassSpawn, Targets{Agent: "researcher"}, "subagents.allow_agents", "agents.defaults.subagents.allow_agents"},
		{"spawn: * allows any", who{agent: "any"}, "spawn_agent", ClassSpawn, Targets{Agent: "whoever"}, "ask:auto", ""},
		{"spawn: explicit [] allows none", who{agent: "none"}, "spawn_agent", ClassSpawn, Targets{Agent: "helper"}, "subagents.allow_agents", "agents.list[2].subagents.allow_agents"},
		// children (Depth > 0).
		{"leaf spawning", who{key: grandchild, depth: 2}, "sessions_spawn", ClassSpawn, Targets{}, "subagents.default_deny", ""},
		{"orchestrator spawning its own agent", who{key: child, depth: 1}, "sessions_spawn", ClassSpawn, Targets{}, "ask:auto", ""},
		{"orchestrator spawning another agent", who{key: child, depth: 1}, "sessions_spawn", ClassSpawn, Targets{Agent: "other"}, "subagents.allow_agents", ""},
		{"child reading sessions", who{key: child, depth: 1}, "sessions_history", ClassRead, Targets{Read: []string{"agent:main:main"}}, "subagents.default_deny", ""},
		{"child: hidden tool called by the model", who{key: child, depth: 1, active: []string{"sessions_yield"}}, "task_list", ClassMutate, Targets{}, "tool_controls.active_tools", ""},
		{"child: forced tool outside its preset", who{key: child, depth: 1, layers: []string{"yieldonly"}, active: []string{"task_list"}}, "task_list", ClassMutate, Targets{}, "tools.allow", ""},
		{"child: parent's deny binds it", who{key: child, depth: 1, layers: []string{"nosend", "talk"}}, "sessions_send", ClassMutate, Targets{}, "tools.deny", ""},
		// the approval step comes last.
		{"mutate elicit after all checks", who{layers: []string{"talk"}}, "task_list", ClassMutate, Targets{}, "ask:elicit", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, toml, storeOf(owners, nil))
			d := e.Decide(context.Background(), tt.who.caller(t, e), tt.tool, tt.class, tt.t)
			if got := ruleOf(d); got != tt.want {
				t.Fatalf("got %q (%s), want %q", got, d.Message, tt.want)
			}
			if tt.wantIn != "" && !strings.Contains(d.Message, tt.wantIn) {
				t.Errorf("message %q does not mention %q", d.Message, tt.wantIn)
			}
			if d.Effect == Deny {
				if err := Check(d); err == nil || err.Error() != d.Message {
					t.Errorf("Check = %v", err)
				}
			} else if d.Effect == Allow && Check(d) != nil {
				t.Errorf("Check of an allowed decision = %v", Check(d))
			}
		})
	}
}

func TestResolveControls(t *testing.T) {
	tool := func(n string) *Choice { return &Choice{Type: "tool", Name: n} }
	typ := func(s string) *Choice { return &Choice{Type: s} }
	tests := []struct {
		name       string
		levels     []Controls // call, preset, agent, default
		wantActive []string   // nil = no filter
		wantChoice Choice
		wantErr    string // substring
	}{
		{"nothing set: auto, no filter", nil, nil, Choice{Type: "auto"}, ""},
		{"default only", []Controls{{}, {}, {}, {Choice: typ("none")}}, nil, Choice{Type: "none"}, ""},
		{"agent beats default", []Controls{{}, {}, {Choice: typ("any")}, {Choice: typ("none")}}, nil, Choice{Type: "any"}, ""},
		{"preset beats agent", []Controls{{}, {Choice: typ("none")}, {Choice: typ("any")}, {}}, nil, Choice{Type: "none"}, ""},
		{"call beats preset", []Controls{{Choice: typ("auto")}, {Choice: typ("none")}, {}, {}}, nil, Choice{Type: "auto"}, ""},
		{"active from the first level that sets it", []Controls{{}, {Active: []string{"task_list"}}, {Active: []string{"cron"}}, {}}, []string{"task_list"}, Choice{Type: "auto"}, ""},
		{"call active beats preset active", []Controls{{Active: []string{"cron"}}, {Active: []string{"task_list"}}}, []string{"cron"}, Choice{Type: "auto"}, ""},
		{"active and choice from different levels", []Controls{{Choice: tool("task_list")}, {Active: []string{"task_list", "cron"}}}, []string{"task_list", "cron"}, Choice{Type: "tool", Name: "task_list"}, ""},
		{"kebab and toolsets in active", []Controls{{Active: []string{"task-list", "toolset.controlled-write"}}}, []string{"task_list", "sessions_send", "sessions_yield"}, Choice{Type: "auto"}, ""},
		{"forced tool in the active set (kebab)", []Controls{{Active: []string{"task_list"}, Choice: tool("task-list")}}, []string{"task_list"}, Choice{Type: "tool", Name: "task_list"}, ""},
		{"forced tool without a filter", []Controls{{Choice: tool("cron")}}, nil, Choice{Type: "tool", Name: "cron"}, ""},
		{"forced tool outside the active set", []Controls{{Choice: tool("cron")}, {Active: []string{"task_list"}}}, nil, Choice{}, `forced tool "cron" is not in active_tools`},
		{"forced server tool by wildcard", []Controls{{Active: []string{"fs__*"}, Choice: tool("fs__read")}}, []string{"fs__*"}, Choice{Type: "tool", Name: "fs__read"}, ""},
		{"tool without a name", []Controls{{Choice: &Choice{Type: "tool"}}}, nil, Choice{}, "needs a name"},
		{"any with active tools", []Controls{{Active: []string{"cron"}, Choice: typ("any")}}, []string{"cron"}, Choice{Type: "any"}, ""},
		{"any without a filter", []Controls{{Choice: typ("any")}}, nil, Choice{Type: "any"}, ""},
		{"any with nothing active", []Controls{{Active: []string{}, Choice: typ("any")}}, nil, Choice{}, `"any" needs at least one active tool`},
		{"call's empty active set beats the preset's", []Controls{{Active: []string{}}, {Active: []string{"cron"}}}, []string{}, Choice{Type: "auto"}, ""},
		{"any with the call's empty active set", []Controls{{Active: []string{}}, {Active: []string{"cron"}, Choice: typ("any")}}, nil, Choice{}, "active_tools is empty"},
		{"unknown type", []Controls{{Choice: typ("required")}}, nil, Choice{}, `tool_choice type "required"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before []Choice
			for _, l := range tt.levels {
				if l.Choice != nil {
					before = append(before, *l.Choice)
				}
			}
			got, err := ResolveControls(tt.levels...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "tool_choice") && !strings.Contains(err.Error(), "active_tools") {
					t.Errorf("error %q names neither tool_choice nor active_tools", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got.Active == nil) != (tt.wantActive == nil) || strings.Join(got.Active, ",") != strings.Join(tt.wantActive, ",") {
				t.Errorf("active = %#v, want %#v", got.Active, tt.wantActive)
			}
			if got.Choice == nil || *got.Choice != tt.wantChoice {
				t.Errorf("choice = %+v, want %+v", got.Choice, tt.wantChoice)
			}
			var after []Choice
			for _, l := range tt.levels {
				if l.Choice != nil {
					after = append(after, *l.Choice)
				}
			}
			for i := range before {
				if before[i] != after[i] {
					t.Errorf("input choice %d changed: %+v → %+v", i, before[i], after[i])
				}
			}
		})
	}
}

func TestPresetControls(t *testing.T) {
	tests := []struct {
		name string
		p    config.Preset
		want Controls
	}{
		{"nothing", config.Preset{}, Controls{}},
		{"empty active_tools is not set", config.Preset{ToolControls: config.ToolControls{ActiveTools: []string{}}}, Controls{}},
		{"active and choice", config.Preset{ToolControls: config.ToolControls{ActiveTools: []string{"cron"}, ToolChoice: &config.ToolChoice{Type: "tool", Name: "cron"}}},
			Controls{Active: []string{"cron"}, Choice: &Choice{Type: "tool", Name: "cron"}}},
	}
	for _, tt := range tests {
		got := PresetControls(tt.p)
		if (got.Active == nil) != (tt.want.Active == nil) || strings.Join(got.Active, ",") != strings.Join(tt.want.Active, ",") ||
			(got.Choice == nil) != (tt.want.Choice == nil) || got.Choice != nil && *got.Choice != *tt.want.Choice {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name     string
		toml     string
		wantPath string // "" = valid
		wantLine int
		wantMsg  string
	}{
		{"known names", `
[agents.presets.p]
tools.allow = ["sessions_list", "sessions-history", "toolset.starter-read", "toolset.controlled_write"]
tools.deny = ["cron"]
`, "", 0, ""},
		{"unknown tool in allow", `
[agents.presets.p]
tools.allow = ["sessions_list", "sessions_lst"]
`, "agents.presets.p.tools.allow[1]", 3, `unknown tool "sessions_lst"`},
		{"unknown tool in deny", `
[agents.presets.p]
model = ""

tools.deny = ["nope"]
`, "agents.presets.p.tools.deny[0]", 5, `unknown tool "nope"`},
		{"Cyrillic look-alike tool", "[agents.presets.p]\ntools.deny = [\"s\u0435ssions_send\"]\n", "agents.presets.p.tools.deny[0]", 2, "unknown tool"},
		{"upper-case tool", "[agents.presets.p]\ntools.deny = [\"Sessions_Send\"]\n", "agents.presets.p.tools.deny[0]", 2, "unknown tool"},
		{"unknown toolset", "[agents.presets.p]\ntools.allow = [\"toolset.everything\"]\n", "agents.presets.p.tools.allow[0]", 2, "toolset.*"},
		{"unknown in active_tools", `
[agents.presets.p.tool_controls]
active_tools = ["task_list", "bogus"]
`, "agents.presets.p.tool_controls.active_tools[1]", 3, `unknown tool "bogus"`},
		{"unknown forced tool", `
[agents.presets.p.tool_controls]
tool_choice = { type = "tool", name = "bogus" }
`, "agents.presets.p.tool_controls.tool_choice.name", 3, `unknown tool "bogus"`},
		{"forced tool outside active_tools", `
[agents.presets.p.tool_controls]
active_tools = ["task_list"]
tool_choice = { type = "tool", name = "cron" }
`, "agents.presets.p.tool_controls.tool_choice", 4, "not in active_tools"},
		{"forced tool in active_tools (kebab)", `
[agents.presets.p.tool_controls]
active_tools = ["task-list"]
tool_choice = { type = "tool", name = "task_list" }
`, "", 0, ""},
		{"empty active_tools means unset, so any forced tool fits", `
[agents.presets.p.tool_controls]
active_tools = []
tool_choice = { type = "tool", name = "cron" }
`, "", 0, ""},
		{"tool_choice any with empty active_tools (unset)", `
[agents.presets.p.tool_controls]
active_tools = []
tool_choice = { type = "any" }
`, "", 0, ""},
		{"forced tool denied by the preset", `
[agents.presets.p]
tools.deny = ["cron"]
[agents.presets.p.tool_controls]
tool_choice = { type = "tool", name = "cron" }
`, "agents.presets.p.tool_controls.tool_choice.name", 5, "tools.allow/tools.deny"},
		{"forced tool outside the preset's allow list", `
[agents.presets.p]
tools.allow = ["task_list"]
[agents.presets.p.tool_controls]
tool_choice = { type = "tool", name = "cron" }
`, "agents.presets.p.tool_controls.tool_choice.name", 5, "tools.allow/tools.deny"},
		{"unknown in tools.subagents.tools.deny", `
[tools.subagents.tools]
deny = ["rm_rf"]
`, "tools.subagents.tools.deny[0]", 3, `unknown tool "rm_rf"`},
		{"unknown in tools.subagents.tools.allow", `
[tools.subagents.tools]
allow = ["task_list", "rm-rf"]
`, "tools.subagents.tools.allow[1]", 3, `unknown tool "rm-rf"`},
		{"server tool of a configured server", `
[agents.presets.p]
tools.allow = ["fs__read_file", "fs__*"]
[[mcp_servers]]
name = "fs"
command = "x"
`, "", 0, ""},
		{"server tool of a kebab server name", `
[agents.presets.p]
tools.allow = ["my-fs__read_file", "my-fs__*"]
[tools.subagents.tools]
deny = ["my_fs__*"]
[[mcp_servers]]
name = "my-fs"
command = "x"
`, "", 0, ""},
		{"server tool of an unknown server", `
[agents.presets.p]
tools.allow = ["gh__*"]
[[mcp_servers]]
name = "fs"
command = "x"
`, "agents.presets.p.tools.allow[0]", 3, "[[mcp_servers]]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tt.toml), "test.toml")
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			_, err = New(cfg, storeOf(nil, nil), known)
			if tt.wantPath == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("New = %v (%T), want *config.Error", err, err)
			}
			if ce.File != "test.toml" {
				t.Errorf("file %q", ce.File)
			}
			found := false
			for _, p := range ce.Problems {
				if p.Path == tt.wantPath {
					found = true
					if p.Line != tt.wantLine {
						t.Errorf("line = %d, want %d", p.Line, tt.wantLine)
					}
					if !strings.Contains(p.Msg, tt.wantMsg) {
						t.Errorf("msg %q does not mention %q", p.Msg, tt.wantMsg)
					}
				}
			}
			if !found {
				t.Fatalf("no problem at %s: %v", tt.wantPath, err)
			}
			if !strings.Contains(err.Error(), tt.wantPath) {
				t.Errorf("error text %q does not name %s", err, tt.wantPath)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[agents.presets.a]
tools.allow = ["x1"]
[agents.presets.b]
tools.deny = ["x2"]
[tools.subagents.tools]
deny = ["x3"]
`), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, nil, known)
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 3 {
		t.Fatalf("got %v, want three problems", err)
	}
}

func TestLayers(t *testing.T) {
	e := newEngine(t, accessPresets, storeOf(nil, nil))
	tests := []struct {
		names   []string
		want    []string // layer paths
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{""}, nil, ""},
		{[]string{"research", "", "plain"}, []string{"agents.presets.research", "agents.presets.plain"}, ""},
		{[]string{"research", "ghost"}, nil, "[agents.presets.ghost]"},
	}
	for _, tt := range tests {
		got, err := e.Layers(tt.names...)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: err = %v, want %q", tt.names, err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("%v: layers returned with an error", tt.names)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tt.names, err)
			continue
		}
		var paths []string
		for _, l := range got {
			paths = append(paths, l.Path)
		}
		if strings.Join(paths, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%v: paths %v, want %v", tt.names, paths, tt.want)
		}
	}
}

func TestAgentPresetAndAllowedAgents(t *testing.T) {
	e := newEngine(t, `
[agents.defaults.subagents]
allow_agents = ["helper"]
[[agents.list]]
id = "main"
preset = "p"
[agents.list.subagents]
allow_agents = ["*"]
[[agents.list]]
id = "coder"
[agents.presets.p]
model = ""
`, storeOf(nil, nil))
	tests := []struct {
		agent      string
		wantPreset string
		wantList   string
		wantPath   string
	}{
		{"main", "p", "*", "agents.list[0].subagents.allow_agents"},
		{"coder", "", "helper", "agents.defaults.subagents.allow_agents"},
		{"stranger", "", "helper", "agents.defaults.subagents.allow_agents"},
	}
	for _, tt := range tests {
		if got := e.AgentPreset(tt.agent); got != tt.wantPreset {
			t.Errorf("AgentPreset(%s) = %q, want %q", tt.agent, got, tt.wantPreset)
		}
		list, path := e.AllowedAgents(tt.agent)
		if got := strings.Join(list, ","); got != tt.wantList || path != tt.wantPath {
			t.Errorf("AllowedAgents(%s) = %q %s, want %q %s", tt.agent, got, path, tt.wantList, tt.wantPath)
		}
	}
}

func TestValidKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"agent:main:main", true},
		{"cron:job-1", true},
		{"agent:main:subagent:0f1e2d", true},
		{"agent:research:../main", true}, // a literal key: nothing treats it as a path
		{"", false},
		{" ", false},
		{"agent:main:main ", false},
		{"\u0430gent:main:main", false},
		{"agent:main:m\u0430in", false},
		{"agent:main:\u00e9", false},
		{"agent:main:\x7f", false},
		{"agent:main:\r", false},
		{strings.Repeat("k", 512), true},
		{strings.Repeat("k", 513), false},
	}
	for _, tt := range tests {
		if got := ValidKey(tt.key) == nil; got != tt.want {
			t.Errorf("ValidKey(%q) ok = %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestCanonicalAndExpand(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{}, []string{}},
		{[]string{"sessions-list", " task_list "}, []string{"sessions_list", "task_list"}},
		{[]string{"toolset.starter-read"}, []string{"sessions_list", "sessions_history", "session_status"}},
		{[]string{"toolset.controlled_write", "toolset.workflow-operator"}, []string{"sessions_send", "sessions_yield", "sessions_spawn", "subagents"}},
		{[]string{"fs__*"}, []string{"fs__*"}},
	}
	for _, tt := range tests {
		got := Expand(tt.in)
		if (got == nil) != (tt.want == nil) || strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Expand(%#v) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
	if got := Canonical("spawn-agent"); got != "spawn_agent" {
		t.Errorf("Canonical = %q", got)
	}
}

// NewChildAccess decides a brand-new child key as ChildAccess does when
// the store has no session for it, without asking the store (here every
// lookup fails, which would deny with policy.error).
func TestNewChildAccess(t *testing.T) {
	keys := []string{"agent:main:subagent:new", "agent:other:subagent:new", "agent:research:subagent:new",
		"agent:main:subagent:1:subagent:new", "agent:main:subagent:bad key"}
	callers := []who{{}, {layers: []string{"plain"}}, {layers: []string{"research"}}, {layers: []string{"cross"}},
		{layers: []string{"mainonly", "projects"}}, {key: "agent:main:subagent:1", depth: 1}}
	for _, vis := range []string{"", "self", "tree", "agent", "all"} {
		toml := accessPresets
		if vis != "" {
			toml += "[tools.sessions]\nvisibility = \"" + vis + "\"\n"
		}
		looked := newEngine(t, toml, storeOf(nil, nil))
		blind := newEngine(t, toml, failing)
		for _, w := range callers {
			for _, key := range keys {
				want := looked.ChildAccess(context.Background(), w.caller(t, looked), key)
				got := blind.NewChildAccess(context.Background(), w.caller(t, blind), key)
				if ruleOf(got) != ruleOf(want) || got.Message != want.Message {
					t.Errorf("visibility %q, caller %+v, key %q: NewChildAccess %q (%s), ChildAccess %q (%s)",
						vis, w, key, ruleOf(got), got.Message, ruleOf(want), want.Message)
				}
			}
		}
	}
}
