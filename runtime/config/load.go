package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	Path string // dotted key path, e.g. agents.presets.observer.tools.allow
	Line int    // 1-based; 0 when unknown
	Msg  string // what is wrong and how to fix it
}

// Error lists every problem found in a configuration file.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("config")
		if e.File != "" {
			b.WriteString(" " + e.File)
		}
		b.WriteString(": ")
		if p.Path != "" {
			b.WriteString(p.Path + ": ")
		}
		b.WriteString(p.Msg)
		if p.Line > 0 {
			fmt.Fprintf(&b, " (line %d)", p.Line)
		}
	}
	return b.String()
}

// Resolve picks the configuration file: flag, else $SESSIONPLANE_CONFIG,
// else $XDG_CONFIG_HOME/sessionplane/config.toml (or ~/.config/...) when it
// exists. An empty result means built-in defaults.
func Resolve(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("SESSIONPLANE_CONFIG"); env != "" {
		return env
	}
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		if home, err := os.UserHomeDir(); err == nil && home != "" {
			base = filepath.Join(home, ".config")
		}
	}
	if base != "" {
		p := filepath.Join(base, "sessionplane", "config.toml")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Load reads and validates the file at path; an empty path gives Default().
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Problems: []Problem{{Msg: fmt.Sprintf("cannot read the file: %v (check --config or $SESSIONPLANE_CONFIG)", err)}}}
	}
	return Parse(data, path)
}

// Parse decodes a TOML document strictly over the defaults and validates it.
// name is used in error messages only.
func Parse(data []byte, name string) (*Config, error) {
	cfg := Default()
	cfg.source = name
	lines, perr := keyLines(data)
	if perr != nil {
		return nil, &Error{File: name, Problems: []Problem{*perr}}
	}
	cfg.lines = lines
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, &Error{File: name, Problems: decodeProblems(err)}
	}
	if u := cfg.Store.URL; u != "" {
		if !IsPostgresURL(u) {
			return nil, &Error{File: name, Problems: []Problem{{Path: "store.url", Line: lines["store.url"],
				Msg: fmt.Sprintf("%q is not a PostgreSQL URL: write postgres://user:password@host:port/database?sslmode=disable, or remove url to use the SQLite file at [store] path", u)}}}
		}
		cfg.Store.Path = u
	}
	cfg.Store.Path = expandHome(cfg.Store.Path)
	// Relative paths in a file are relative to the file's directory, so a
	// config works from whatever directory the client starts us in.
	if name != "" {
		base := filepath.Dir(name)
		rel := func(p string) string {
			if p == "" || filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(base, p)
		}
		if cfg.Store.Path != DefaultDBPath() && !strings.HasPrefix(cfg.Store.Path, "file:") && !IsPostgresURL(cfg.Store.Path) {
			cfg.Store.Path = rel(cfg.Store.Path)
		}
		for k, p := range cfg.Providers {
			p.Script = rel(p.Script)
			cfg.Providers[k] = p
		}
		for i := range cfg.Agents.List {
			cfg.Agents.List[i].Workspace = rel(cfg.Agents.List[i].Workspace)
		}
	}
	if probs := cfg.validate(); len(probs) > 0 {
		return nil, &Error{File: name, Problems: probs}
	}
	return cfg, nil
}

func decodeProblems(err error) []Problem {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		out := make([]Problem, 0, len(strict.Errors))
		for _, e := range strict.Errors {
			line, _ := e.Position()
			out = append(out, Problem{
				Path: strings.Join(e.Key(), "."),
				Line: line,
				Msg:  "unknown key (see testdata/example.toml for every key this version knows; check the spelling and the table it is in)",
			})
		}
		return out
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return []Problem{{Path: strings.Join(de.Key(), "."), Line: line, Msg: friendlyDecode(strings.TrimPrefix(de.Error(), "toml: "))}}
	}
	return []Problem{{Msg: err.Error()}}
}

var typeErrRe = regexp.MustCompile(`cannot decode TOML (\w+) into (?:struct field \S+ of type|a Go value of type) (\S+)`)

// friendlyDecode rewrites go-toml's type errors without Go type names:
// "expected an integer, got a string".
func friendlyDecode(msg string) string {
	m := typeErrRe.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := m[2]
	switch {
	case strings.HasPrefix(want, "int"), strings.HasPrefix(want, "uint"):
		want = "an integer"
	case strings.HasPrefix(want, "float"):
		want = "a number"
	case want == "bool", want == "*bool":
		want = "true or false"
	case want == "string":
		want = "a string"
	case strings.HasPrefix(want, "[]"):
		want = "an array"
	default:
		want = "a table"
	}
	return fmt.Sprintf("wrong type: expected %s, got a TOML %s", want, m[1])
}

// keyLines maps every key path in the document to the line it is written on.
// Arrays of tables get indexed paths: agents.list[1].preset.
func keyLines(data []byte) (map[string]int, *Problem) {
	lines := map[string]int{}
	counts := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts := keyParts(e.Key())
			table = resolveTable(parts, counts, e.Kind == unstable.ArrayTable)
			lines[table] = p.Shape(e.Raw).Start.Line
			if r := firstKeyRange(e); r != nil {
				lines[table] = p.Shape(*r).Start.Line
			}
		case unstable.KeyValue:
			parts := keyParts(e.Key())
			full := joinPath(table, strings.Join(parts, "."))
			line := 0
			if r := firstKeyRange(e); r != nil {
				line = p.Shape(*r).Start.Line
			}
			lines[full] = line
			addInline(e.Value(), full, line, lines)
		}
	}
	if err := p.Error(); err != nil {
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			sh := p.Shape(p.Range(perr.Highlight))
			return nil, &Problem{Line: sh.Start.Line, Msg: "TOML syntax: " + perr.Message}
		}
		return nil, &Problem{Msg: "TOML syntax: " + err.Error()}
	}
	return lines, nil
}

func addInline(n *unstable.Node, prefix string, line int, lines map[string]int) {
	if n == nil || n.Kind != unstable.InlineTable {
		return
	}
	it := n.Children()
	for it.Next() {
		kv := it.Node()
		if kv.Kind != unstable.KeyValue {
			continue
		}
		full := joinPath(prefix, strings.Join(keyParts(kv.Key()), "."))
		lines[full] = line
		addInline(kv.Value(), full, line, lines)
	}
}

func firstKeyRange(e *unstable.Node) *unstable.Range {
	it := e.Key()
	if it.Next() {
		r := it.Node().Raw
		if r.Length > 0 {
			return &r
		}
	}
	return nil
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// resolveTable turns a header's dotted key into an indexed path, counting
// array-of-tables entries: [[agents.list]] twice gives agents.list[0], agents.list[1].
func resolveTable(parts []string, counts map[string]int, array bool) string {
	// Index the deepest array table that prefixes this header (e.g. [agents.list.subagents]).
	joined := strings.Join(parts, ".")
	if array {
		n := counts[joined]
		counts[joined] = n + 1
		return fmt.Sprintf("%s[%d]", joined, n)
	}
	best := ""
	for k := range counts {
		if strings.HasPrefix(joined, k+".") && len(k) > len(best) {
			best = k
		}
	}
	if best != "" {
		return fmt.Sprintf("%s[%d]%s", best, counts[best]-1, strings.TrimPrefix(joined, best))
	}
	return joined
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

var indexRe = regexp.MustCompile(`\[\d+\]`)

// lineFor finds the line of path, or of its longest known prefix.
func lineFor(lines map[string]int, path string) int {
	for p := path; p != ""; {
		if l, ok := lines[p]; ok && l > 0 {
			return l
		}
		if l, ok := lines[indexRe.ReplaceAllString(p, "")]; ok && l > 0 {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
	}
	return p
}

// Names of things the configuration refers to.
var (
	// ProviderKinds are the valid [providers.*] kind values.
	ProviderKinds = []string{"anthropic", "openai", "openai-chat", "openai-compatible", "sampling", "scripted"}
	// ThinkingLevels are the valid thinking values ("" = not set).
	ThinkingLevels = []string{"off", "low", "medium", "high"}
	// Visibilities are the valid tools.sessions.visibility values.
	Visibilities = []string{"self", "tree", "agent", "all"}
	// ActionClasses are the valid [approval] keys.
	ActionClasses = []string{"read-session", "mutate-session", "spawn-subagent"}
	// ApprovalModes are the valid [approval] values.
	ApprovalModes = []string{"none", "auto", "elicit", "deny"}
	// ApprovalParkMinutes is the [approval] key holding how long a parked
	// call waits for a decision (a quoted number of minutes, default 60).
	ApprovalParkMinutes = "park_minutes"
	// ToolChoiceTypes are the valid tool_choice.type values.
	ToolChoiceTypes = []string{"auto", "any", "none", "tool"}
)

// validID reports whether s is an id: 1-64 of [a-z0-9_-], starting with a
// letter or digit. (It was the regexp ^[a-z0-9][a-z0-9_-]{0,63}$, whose
// compilation at package init was a millisecond of every start.)
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] == '_' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

func (c *Config) validate() []Problem {
	var probs []Problem
	add := func(path, format string, args ...any) {
		probs = append(probs, Problem{Path: path, Line: c.Line(path), Msg: fmt.Sprintf(format, args...)})
	}
	if !validID(c.MCP.Agent) {
		add("mcp.agent", "%q is not a valid agent id: use lower-case letters, digits, '-' or '_' (e.g. \"main\")", c.MCP.Agent)
	}
	if c.MCP.WorkerPool < 1 || c.MCP.WorkerPool > 100 {
		add("mcp.worker_pool", "must be between 1 and 100 (default 64), got %d", c.MCP.WorkerPool)
	}
	if c.MCP.Preset != "" {
		if _, ok := c.Agents.Presets[c.MCP.Preset]; !ok {
			add("mcp.preset", "preset %q is not defined: add [agents.presets.%s] or remove the key (defined: %s)", c.MCP.Preset, c.MCP.Preset, keysOf(c.Agents.Presets))
		}
	}
	probs = append(probs, c.validateHTTP()...)
	c.validateCluster(add)
	for _, name := range sortedKeys(c.Providers) {
		p := c.Providers[name]
		path := "providers." + name
		if !validID(name) {
			add(path, "provider name %q: use lower-case letters, digits, '-' or '_'", name)
		}
		if !oneOf(p.Kind, ProviderKinds) {
			add(path+".kind", "%q is not a provider kind: use one of %s", p.Kind, strings.Join(ProviderKinds, ", "))
		}
		if p.Kind == "scripted" && p.Script == "" {
			add(path+".script", "a scripted provider needs script = \"path/to/file.json\"")
		}
		if p.Kind != "scripted" && p.Script != "" {
			add(path+".script", "only providers of kind \"scripted\" take a script")
		}
		if p.TimeoutSeconds < 0 {
			add(path+".timeout_seconds", "must be ≥ 0 (0 = 120 s), got %d", p.TimeoutSeconds)
		}
	}
	seenModel := map[string]bool{}
	for i, m := range c.Models {
		path := fmt.Sprintf("models[%d]", i)
		if m.ID == "" {
			add(path+".id", "every [[models]] entry needs an id, e.g. id = \"local/qwen\"")
			continue
		}
		if seenModel[m.ID] {
			add(path+".id", "model id %q is defined twice", m.ID)
		}
		seenModel[m.ID] = true
		if _, ok := c.Providers[m.Provider]; !ok {
			add(path+".provider", "model %q names provider %q, which is not defined: add [providers.%s] (defined: %s)", m.ID, m.Provider, m.Provider, keysOf(c.Providers))
		}
		if m.Cost.Input < 0 || m.Cost.Output < 0 {
			add(path+".cost", "costs must be ≥ 0 USD per million tokens")
		}
	}
	checkModel := func(path, id string) {
		if id != "" && !seenModel[id] {
			add(path, "model %q is not defined in [[models]] (defined: %s)", id, modelIDs(c.Models))
		}
	}
	checkThinking := func(path, v string) {
		if v != "" && !oneOf(v, ThinkingLevels) {
			add(path, "%q is not a thinking level: use one of %s", v, strings.Join(ThinkingLevels, ", "))
		}
	}
	d := c.Agents.Defaults
	checkModel("agents.defaults.model", d.Model)
	checkModel("agents.defaults.subagents.model", d.Subagents.Model)
	checkThinking("agents.defaults.subagents.thinking", d.Subagents.Thinking)
	if d.MaxIterations < 1 || d.MaxIterations > 1000 {
		add("agents.defaults.max_iterations", "must be between 1 and 1000 (default 25), got %d", d.MaxIterations)
	}
	s := d.Subagents
	if s.MaxConcurrent < 1 || s.MaxConcurrent > 1024 {
		add("agents.defaults.subagents.max_concurrent", "must be between 1 and 1024 (default 8), got %d", s.MaxConcurrent)
	}
	if s.ArchiveAfterMinutes < 0 {
		add("agents.defaults.subagents.archive_after_minutes", "must be ≥ 0 (0 = never archive), got %d", s.ArchiveAfterMinutes)
	}
	if s.RunTimeoutSeconds < 0 {
		add("agents.defaults.subagents.run_timeout_seconds", "must be ≥ 0 (0 = no timeout), got %d", s.RunTimeoutSeconds)
	}
	if s.MaxSpawnDepth < 1 || s.MaxSpawnDepth > 5 {
		add("agents.defaults.subagents.max_spawn_depth", "must be between 1 and 5 (default 1: children are leaves), got %d", s.MaxSpawnDepth)
	}
	if s.MaxChildrenPerAgent < 1 || s.MaxChildrenPerAgent > 1000 {
		add("agents.defaults.subagents.max_children_per_agent", "must be between 1 and 1000 (default 5), got %d", s.MaxChildrenPerAgent)
	}
	seenAgent := map[string]bool{}
	defaults := 0
	for i, a := range c.Agents.List {
		path := fmt.Sprintf("agents.list[%d]", i)
		if !validID(a.ID) {
			add(path+".id", "%q is not a valid agent id: use lower-case letters, digits, '-' or '_'", a.ID)
		}
		if seenAgent[a.ID] {
			add(path+".id", "agent %q is defined twice", a.ID)
		}
		seenAgent[a.ID] = true
		if a.Default {
			defaults++
			if defaults > 1 {
				add(path+".default", "only one agent may have default = true")
			}
		}
		if a.Preset != "" {
			if _, ok := c.Agents.Presets[a.Preset]; !ok {
				add(path+".preset", "preset %q is not defined: add [agents.presets.%s] (defined: %s)", a.Preset, a.Preset, keysOf(c.Agents.Presets))
			}
		}
		checkModel(path+".model", a.Model)
		for _, pn := range sortedKeys(a.APIKeys) {
			if _, ok := c.Providers[pn]; !ok {
				add(path+".api_keys."+pn, "provider %q is not defined: add [providers.%s] or remove the key (defined: %s)", pn, pn, keysOf(c.Providers))
			}
			if a.APIKeys[pn] == "" {
				add(path+".api_keys."+pn, "name the environment variable that holds this agent's key for provider %q", pn)
			}
		}
		checkModel(path+".subagents.model", a.Subagents.Model)
		checkThinking(path+".subagents.thinking", a.Subagents.Thinking)
	}
	for _, name := range sortedKeys(c.Agents.Presets) {
		p := c.Agents.Presets[name]
		path := "agents.presets." + name
		if !validID(name) {
			add(path, "preset name %q: use lower-case letters, digits, '-' or '_'", name)
		}
		checkModel(path+".model", p.Model)
		if p.TimeoutSecs < 0 {
			add(path+".timeout_secs", "must be ≥ 0, got %d", p.TimeoutSecs)
		}
		if tc := p.ToolControls.ToolChoice; tc != nil {
			tcPath := path + ".tool_controls.tool_choice"
			switch {
			case !oneOf(tc.Type, ToolChoiceTypes):
				add(tcPath+".type", "%q is not a tool_choice type: use one of %s", tc.Type, strings.Join(ToolChoiceTypes, ", "))
			case tc.Type == "tool" && tc.Name == "":
				add(tcPath+".name", "tool_choice type \"tool\" needs name = \"<tool>\"")
			case tc.Type != "tool" && tc.Name != "":
				add(tcPath+".name", "name is only valid with type = \"tool\"")
			}
		}
	}
	if !oneOf(c.Tools.Sessions.Visibility, Visibilities) {
		add("tools.sessions.visibility", "%q is not a visibility: use one of %s", c.Tools.Sessions.Visibility, strings.Join(Visibilities, ", "))
	}
	if n := c.Tools.Sessions.MaxPingPongTurns; n < 0 || n > 5 {
		add("tools.sessions.max_ping_pong_turns", "must be between 0 and 5, got %d", n)
	}
	for _, k := range sortedKeys(c.Approval) {
		path := "approval." + k
		if k == ApprovalParkMinutes {
			if n, err := strconv.Atoi(c.Approval[k]); err != nil || n < 1 || n > 10080 {
				add(path, "%q is not a number of minutes: use a quoted whole number between 1 and 10080, e.g. park_minutes = \"60\"", c.Approval[k])
			}
			continue
		}
		if !oneOf(k, ActionClasses) {
			add(path, "%q is not an action class: use one of %s", k, strings.Join(ActionClasses, ", "))
			continue
		}
		if !oneOf(c.Approval[k], ApprovalModes) {
			add(path, "%q is not an approval mode: use one of %s", c.Approval[k], strings.Join(ApprovalModes, ", "))
		}
	}
	c.validateLimits(add)
	probs = append(probs, c.validateBudgets()...)
	seenServer := map[string]bool{}
	for i, m := range c.MCPServers {
		path := fmt.Sprintf("mcp_servers[%d]", i)
		if !validID(m.Name) || strings.Contains(m.Name, "__") {
			add(path+".name", "%q: a server name uses lower-case letters, digits, '-' or '_' and no \"__\" (tools are offered as <name>__<tool>)", m.Name)
		}
		if seenServer[m.Name] {
			add(path+".name", "server %q is defined twice", m.Name)
		}
		seenServer[m.Name] = true
		if m.Command == "" {
			add(path+".command", "command is required (e.g. command = \"npx\")")
		}
	}
	return probs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func keysOf[V any](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(sortedKeys(m), ", ")
}

func modelIDs(ms []Model) string {
	if len(ms) == 0 {
		return "none"
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = strconv.Quote(m.ID)
	}
	return strings.Join(ids, ", ")
}
