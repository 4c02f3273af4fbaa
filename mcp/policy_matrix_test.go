package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// The adversarial policy matrix: every row is a call through the real MCP
// surface (in-process mcp-go client, real SQLite) that tries to get past the
// gate, or a control that must get through. A bypass is a row that should be
// refused (or must not leak a session) and was not.
//
// Decisions recorded here:
//   - key_prefix is an exact, case-sensitive string prefix; keys with
//     padding or non-ASCII look-alikes are refused as invalid keys
//     (rule sessions.key) before any prefix is compared.
//   - "agent:research:../main" is a literal key inside the prefix: nothing
//     treats keys as paths, so it reads that key (seeded here as a research
//     session) and never agent:main:main.
//   - the aliases "main" and "current" resolve to the MCP client's own
//     session, which a caller always sees even when its preset's key_prefix
//     does not cover it. Under a preset p that is agent:main:p, never the
//     unrestricted client's agent:main:main (config.OwnSession).

// Configurations the rows run under. The MCP client is agent "main" in all
// of them: its own session is agent:main:main without a preset and
// agent:main:<preset> under one; agent:main:main (the unrestricted client's,
// seeded with a secret) exists in all of them.
var matrixConfigs = map[string]string{
	// No policy at all: everything is visible.
	"open": ``,
	// key_prefix with cross_agent on, so the prefix alone decides.
	"prefix": `
[mcp]
preset = "research"
[agents.presets.research]
sessions.key_prefix = "agent:research:"
sessions.cross_agent = true
`,
	// A preset with cross_agent unset (default false) and no prefix.
	"cross": `
[mcp]
preset = "plain"
[agents.presets.plain]
sessions.can_send = true
`,
	// Tool allow/deny, written in kebab case.
	"tools": `
[mcp]
preset = "picky"
[agents.presets.picky]
tools.allow = ["sessions-list", "sessions_history", "session-status", "agents_list"]
tools.deny = ["agents-list"]
`,
	"self":   "[tools.sessions]\nvisibility = \"self\"\n",
	"tree":   "[tools.sessions]\nvisibility = \"tree\"\n",
	"agent":  "[tools.sessions]\nvisibility = \"agent\"\n",
	"elicit": "[approval]\nread-session = \"elicit\"\n",
	"auto":   "[approval]\nread-session = \"auto\"\n",
	"deny":   "[approval]\nread-session = \"deny\"\n",
	"elicit-prefix": `
[mcp]
preset = "research"
[agents.presets.research]
sessions.key_prefix = "agent:research:"
sessions.cross_agent = true
[approval]
read-session = "elicit"
`,
}

// seeded are the sessions every fixture holds besides the client's own:
// key → owner agent. Each has one message with the word "zebra", so a
// search or a read that reaches it shows it.
var seeded = []struct{ key, agent, parent string }{
	{"agent:research:x", "research", ""},
	{"agent:research:../main", "research", ""},
	{"agent:researcher:x", "researcher", ""},
	{"agent:research", "research", ""},
	{"AGENT:research:x", "research", ""},
	{"agent:Research:x", "Research", ""},
	{" agent:research:x", "research", ""},
	{"agent:research:x ", "research", ""},
	{"\u0430gent:research:x", "research", ""}, // Cyrillic а
	{"agent:main:x", "main", ""},
	{"agent:main:imported", "other", ""}, // stored owner differs from the key
	{"agent:other:x", "other", ""},
	{"agent:main:subagent:1", "main", "agent:main:main"},
}

// secretOf is the text of key's one message: unique per key, and no
// secret is a prefix of another (so a leak is never mistaken for a read).
func secretOf(key string) string {
	for i, s := range seeded {
		if s.key == key {
			return fmt.Sprintf("zebra secret s%02d.", i)
		}
	}
	if key == "agent:main:main" {
		return "zebra secret main."
	}
	return "zebra secret own " + key + "."
}

// elicitor is a client elicitation handler that records what it was asked.
type elicitor struct {
	mu      sync.Mutex
	reqs    []mcp.ElicitationRequest
	respond func(mcp.ElicitationRequest) (*mcp.ElicitationResult, error)
}

func (e *elicitor) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	e.mu.Lock()
	e.reqs = append(e.reqs, req)
	e.mu.Unlock()
	return e.respond(req)
}

func (e *elicitor) requests() []mcp.ElicitationRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]mcp.ElicitationRequest(nil), e.reqs...)
}

func answer(action mcp.ElicitationResponseAction, content any) func(mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return func(mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
		return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: action, Content: content}}, nil
	}
}

// Clients the rows run with: without elicitation, or with a handler.
var matrixClients = map[string]func(mcp.ElicitationRequest) (*mcp.ElicitationResult, error){
	"plain":        nil,
	"accept":       answer(mcp.ElicitationResponseActionAccept, map[string]any{"approve": true}),
	"accept-false": answer(mcp.ElicitationResponseActionAccept, map[string]any{"approve": false}),
	"accept-junk":  answer(mcp.ElicitationResponseActionAccept, map[string]any{"approve": "yes"}),
	"decline":      answer(mcp.ElicitationResponseActionDecline, nil),
	"cancel":       answer(mcp.ElicitationResponseActionCancel, nil),
	"broken": func(mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
		return nil, errors.New("the user's terminal went away")
	},
}

// env is one row's world: a fixture plus what the row needs to look at.
type env struct {
	*fixture
	ids  map[string]string // session key → session id
	elic *elicitor
}

func newEnv(t *testing.T, cfg, clientKind, era string) *env {
	t.Helper()
	toml, ok := matrixConfigs[cfg]
	if !ok {
		t.Fatalf("no config %q", cfg)
	}
	respond, ok := matrixClients[clientKind]
	if !ok {
		t.Fatalf("no client %q", clientKind)
	}
	var opts []client.ClientOption
	var el *elicitor
	if respond != nil {
		el = &elicitor{respond: respond}
		opts = append(opts, client.WithElicitationHandler(el))
	}
	version := era
	if era == "2026-07-28" {
		opts = append(opts, client.WithProtocolVersion(era))
		version = ""
	}
	f := newFixtureVersion(t, toml, version, opts...)
	if got := f.c.ProtocolVersion(); got != era {
		t.Fatalf("negotiated %q, want %q", got, era)
	}
	ctx := context.Background()
	// The client's main session exists before its children are seeded
	// (the modern era has no initialize to create it).
	if _, err := f.st.EnsureSession(ctx, store.Session{Key: "agent:main:main", AgentID: "main", Kind: store.KindMain}); err != nil {
		t.Fatal(err)
	}
	e := &env{fixture: f, ids: map[string]string{}, elic: el}
	for _, s := range seeded {
		depth := 0
		if s.parent != "" {
			depth = 1
		}
		sess, err := f.st.EnsureSession(ctx, store.Session{Key: s.key, AgentID: s.agent, ParentKey: s.parent, Depth: depth, Label: "seeded"})
		if err != nil {
			t.Fatal(err)
		}
		e.ids[s.key] = sess.ID
		f.messages(s.key, secretOf(s.key))
	}
	f.messages("agent:main:main", secretOf("agent:main:main"))
	if own := f.srv.Caller(); own.Key != "agent:main:main" {
		if _, err := f.st.EnsureSession(ctx, store.Session{Key: own.Key, AgentID: own.AgentID, Kind: store.KindMain, Preset: presetOf(own)}); err != nil {
			t.Fatal(err)
		}
		f.messages(own.Key, secretOf(own.Key))
	}
	return e
}

// outcome is what a row observed.
type outcome struct {
	isError bool
	status  string // structuredContent.status ("" for a success without one)
	rule    string
	text    string
	out     map[string]any
}

func (o outcome) refused() bool { return o.isError && o.status == "forbidden" }

func (o outcome) String() string {
	if !o.isError {
		return "ok: " + clip(o.text, 160)
	}
	return fmt.Sprintf("isError status=%q rule=%q: %s", o.status, o.rule, clip(o.text, 200))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

var ruleRe = regexp.MustCompile(`\[rule ([^\]]+)\]`)

func (e *env) tool(name string, args map[string]any) outcome {
	e.t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := e.c.CallTool(context.Background(), req)
	if err != nil {
		// A JSON-RPC error: no data reached the client, but it is not a
		// forbidden result either.
		return outcome{isError: true, status: "jsonrpc-error", text: err.Error()}
	}
	o := outcome{isError: res.IsError, text: text(res)}
	if res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		_ = json.Unmarshal(b, &o.out)
		o.status, _ = o.out["status"].(string)
		o.rule, _ = o.out["rule"].(string)
	}
	return o
}

// read is resources/read. A refusal there can only be a JSON-RPC error
// (resources have no isError); it counts as refused when it says forbidden
// and names the rule.
func (e *env) read(uri string) outcome {
	e.t.Helper()
	req := mcp.ReadResourceRequest{}
	req.Params.URI = uri
	res, err := e.c.ReadResource(context.Background(), req)
	if err != nil {
		o := outcome{isError: true, status: "error", text: err.Error()}
		if strings.Contains(err.Error(), "forbidden:") {
			o.status = "forbidden"
			if m := ruleRe.FindStringSubmatch(err.Error()); m != nil {
				o.rule = m[1]
			}
		}
		return o
	}
	var b strings.Builder
	for _, c := range res.Contents {
		if tc, ok := c.(mcp.TextResourceContents); ok {
			b.WriteString(tc.Text)
		}
	}
	o := outcome{text: b.String()}
	_ = json.Unmarshal([]byte(b.String()), &o.out)
	return o
}

func (e *env) listed(name string) bool {
	e.t.Helper()
	res, err := e.c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		e.t.Fatalf("tools/list: %v", err)
	}
	for _, tl := range res.Tools {
		if tl.Name == name {
			return true
		}
	}
	return false
}

// forbiddenKeys are the seeded keys the "prefix" config must never show.
var prefixForbidden = []string{"agent:researcher:x", "agent:research", "AGENT:research:x", "agent:Research:x",
	" agent:research:x", "agent:research:x ", "\u0430gent:research:x", "agent:main:x", "agent:main:imported",
	"agent:other:x", "agent:main:subagent:1"}

// leaks reports which of keys (or their secrets) appear in o.
func leaks(o outcome, keys ...string) []string {
	var out []string
	for _, k := range keys {
		if strings.Contains(o.text, secretOf(k)) || strings.Contains(o.text, `"`+k+`"`) || containsKey(o.out, k) {
			out = append(out, k)
		}
	}
	return out
}

// containsKey looks for k as any string value in a decoded JSON tree.
func containsKey(v any, k string) bool {
	switch x := v.(type) {
	case string:
		return x == k || strings.Contains(x, secretOf(k))
	case map[string]any:
		for _, y := range x {
			if containsKey(y, k) {
				return true
			}
		}
	case []any:
		for _, y := range x {
			if containsKey(y, k) {
				return true
			}
		}
	}
	return false
}

func num(o outcome, field string) int {
	f, _ := o.out[field].(float64)
	return int(f)
}

// expectation kinds.
const (
	wantOK        = "ok"        // not an error; check may look closer
	wantForbidden = "forbidden" // isError, status forbidden, the rule
	wantNoData    = "no-data"   // any error without the session's data (e.g. not found, unknown tool)
)

type matrixRow struct {
	name   string
	cfg    string // key of matrixConfigs
	client string // key of matrixClients
	run    func(e *env) outcome
	want   string // wantOK | wantForbidden | wantNoData
	rule   string // for wantForbidden
	// check looks closer at an outcome; a non-empty answer fails the row.
	// When leak is set, a failure of check is a bypass (data got out).
	check func(e *env, o outcome) string
	leak  bool
	// knownBug marks a failure found in code outside policy/ and reported
	// to its owners: it is logged (as a known bypass when it leaks) instead
	// of failing the test, and the row fails once it is fixed, so the mark
	// goes.
	knownBug string
}

func history(args map[string]any) func(e *env) outcome {
	return func(e *env) outcome { return e.tool("sessions_history", args) }
}

func historyOf(key string) func(e *env) outcome {
	return history(map[string]any{"key": key})
}

func historyByID(key string) func(e *env) outcome {
	return func(e *env) outcome { return e.tool("sessions_history", map[string]any{"sessionId": e.ids[key]}) }
}

func statusOf(key string) func(e *env) outcome {
	return func(e *env) outcome { return e.tool("session_status", map[string]any{"key": key}) }
}

func resource(key string) func(e *env) outcome {
	return func(e *env) outcome { return e.read("session://" + key) }
}

// readsKey checks a successful history/resource read returned key's own
// transcript and nothing of the others.
func readsKey(key string, others ...string) func(e *env, o outcome) string {
	return func(e *env, o outcome) string {
		if !strings.Contains(o.text, secretOf(key)) {
			return fmt.Sprintf("did not return %q's transcript", key)
		}
		if l := leaks(outcome{text: o.text}, others...); len(l) > 0 {
			return fmt.Sprintf("leaked %q", l)
		}
		return ""
	}
}

func noLeak(keys ...string) func(e *env, o outcome) string {
	return func(e *env, o outcome) string {
		if l := leaks(o, keys...); len(l) > 0 {
			return fmt.Sprintf("leaked %q", l)
		}
		return ""
	}
}

// filtered checks a list/search result hides keys and says nothing about
// them: neither a count (the "filtered" field is gone) nor a note that more
// exist. Existence is an oracle too (issue 10, item 6). min is how many
// seeded entries the policy hides, kept to document each row.
func filtered(min int, keys ...string) func(e *env, o outcome) string {
	return func(e *env, o outcome) string {
		if l := leaks(o, keys...); len(l) > 0 {
			return fmt.Sprintf("leaked %q", l)
		}
		if _, ok := o.out["filtered"]; ok || min < 0 {
			return fmt.Sprintf("the result counts what policy hides: filtered = %v", o.out["filtered"])
		}
		if strings.Contains(o.text, "hidden") || strings.Contains(o.text, "more in sessions") {
			return "the text reveals that hidden sessions matched: " + o.text
		}
		return ""
	}
}

func also(checks ...func(e *env, o outcome) string) func(e *env, o outcome) string {
	return func(e *env, o outcome) string {
		for _, c := range checks {
			if p := c(e, o); p != "" {
				return p
			}
		}
		return ""
	}
}

// hiddenAndRefused calls a tool the client may not use and checks it is
// not in tools/list either.
func hiddenAndRefused(name string, args map[string]any) func(e *env) outcome {
	return func(e *env) outcome {
		o := e.tool(name, args)
		if e.listed(name) {
			o.text = "LISTED in tools/list; " + o.text
			o.status += "+listed"
		}
		return o
	}
}

func listedTool(name string) func(e *env, o outcome) string {
	return func(e *env, o outcome) string {
		if !e.listed(name) {
			return name + " is missing from tools/list"
		}
		return ""
	}
}

// asked checks the elicitation the client received: one request naming
// the tool and the target session, with a boolean approve field.
func asked(tool, target string) func(e *env, o outcome) string {
	return func(e *env, o outcome) string {
		reqs := e.elic.requests()
		if len(reqs) != 1 {
			return fmt.Sprintf("%d elicitation requests, want 1", len(reqs))
		}
		p := reqs[0].Params
		if !strings.Contains(p.Message, tool) || !strings.Contains(p.Message, target) {
			return fmt.Sprintf("elicitation message %q does not name %s and %s", p.Message, tool, target)
		}
		b, _ := json.Marshal(p.RequestedSchema)
		if !strings.Contains(string(b), `"approve"`) || !strings.Contains(string(b), `"boolean"`) {
			return fmt.Sprintf("requested schema %s has no boolean approve", b)
		}
		return ""
	}
}

func notAsked(e *env, o outcome) string {
	if e.elic != nil && len(e.elic.requests()) > 0 {
		return fmt.Sprintf("the client was asked %d time(s)", len(e.elic.requests()))
	}
	return ""
}

func mentions(subs ...string) func(e *env, o outcome) string {
	return func(e *env, o outcome) string {
		for _, s := range subs {
			if !strings.Contains(o.text, s) {
				return fmt.Sprintf("text %q does not mention %q", clip(o.text, 300), s)
			}
		}
		return ""
	}
}

func matrixRows() []matrixRow {
	all := "agent:main:main"     // the unrestricted client's own session
	own := "agent:main:research" // the own session of the "prefix" principal
	return []matrixRow{
		// ---- key_prefix escapes (preset key_prefix "agent:research:", cross_agent on) ----
		{name: "prefix: control, inside the prefix", cfg: "prefix", run: historyOf("agent:research:x"), want: wantOK, check: readsKey("agent:research:x", prefixForbidden...)},
		{name: "prefix: agent:researcher:x", cfg: "prefix", run: historyOf("agent:researcher:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: agent:research (no colon)", cfg: "prefix", run: historyOf("agent:research"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: AGENT:research:x", cfg: "prefix", run: historyOf("AGENT:research:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: agent:Research:x", cfg: "prefix", run: historyOf("agent:Research:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: leading space", cfg: "prefix", run: historyOf(" agent:research:x"), want: wantForbidden, rule: "sessions.key"},
		{name: "prefix: trailing space", cfg: "prefix", run: historyOf("agent:research:x "), want: wantForbidden, rule: "sessions.key"},
		{name: "prefix: Cyrillic look-alike", cfg: "prefix", run: historyOf("\u0430gent:research:x"), want: wantForbidden, rule: "sessions.key"},
		{name: "prefix: ../ is a literal key, not main", cfg: "prefix", run: historyOf("agent:research:../main"), want: wantOK, check: readsKey("agent:research:../main", all, "agent:main:x")},
		{name: "prefix: own session outside the prefix", cfg: "prefix", run: historyOf(own), want: wantOK, check: readsKey(own, append(prefixForbidden, all)...)},
		{name: "prefix: the unrestricted client's agent:main:main is not its own", cfg: "prefix", run: historyOf(all), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: alias main is the caller itself", cfg: "prefix", run: historyOf("main"), want: wantOK, check: readsKey(own, append(prefixForbidden, all)...)},
		{name: "prefix: alias current is the caller itself", cfg: "prefix", run: historyOf("current"), want: wantOK, check: readsKey(own, append(prefixForbidden, all)...)},
		{name: "prefix: another session of the caller's agent", cfg: "prefix", run: historyOf("agent:main:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: the caller's child", cfg: "prefix", run: historyOf("agent:main:subagent:1"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: sessionKey alias", cfg: "prefix", run: history(map[string]any{"sessionKey": "agent:main:x"}), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: sessionId of agent:main:x", cfg: "prefix", run: historyByID("agent:main:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: sessionId of agent:researcher:x", cfg: "prefix", run: historyByID("agent:researcher:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: sessionId of a padded key", cfg: "prefix", run: historyByID("agent:research:x "), want: wantForbidden, rule: "sessions.key"},
		{name: "prefix: sessionId of a look-alike key", cfg: "prefix", run: historyByID("\u0430gent:research:x"), want: wantForbidden, rule: "sessions.key"},
		{name: "prefix: sessionId control", cfg: "prefix", run: historyByID("agent:research:x"), want: wantOK, check: readsKey("agent:research:x", prefixForbidden...)},
		{name: "prefix: allowed key with a forbidden sessionId", cfg: "prefix", run: func(e *env) outcome {
			return e.tool("sessions_history", map[string]any{"key": "agent:research:x", "sessionId": e.ids["agent:main:x"]})
		}, want: wantOK, check: readsKey("agent:research:x", prefixForbidden...)},
		{name: "prefix: session_status agent:main:x", cfg: "prefix", run: statusOf("agent:main:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: session_status agent:researcher:x", cfg: "prefix", run: statusOf("agent:researcher:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: session_status AGENT:research:x", cfg: "prefix", run: statusOf("AGENT:research:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: session_status padded key", cfg: "prefix", run: statusOf("agent:research:x "), want: wantForbidden, rule: "sessions.key"},
		{name: "prefix: session_status of itself does not list forbidden children", cfg: "prefix", run: statusOf("current"), want: wantOK,
			check: noLeak("agent:main:subagent:1"), leak: true,
		},
		{name: "prefix: resources/read agent:main:x", cfg: "prefix", run: resource("agent:main:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: resources/read agent:researcher:x", cfg: "prefix", run: resource("agent:researcher:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: resources/read AGENT:research:x", cfg: "prefix", run: resource("AGENT:research:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		// mcp-go's URI template matcher does not match the non-ASCII URI at
		// all ("resource not found"): refused without data, before our gate.
		{name: "prefix: resources/read look-alike", cfg: "prefix", run: resource("\u0430gent:research:x"), want: wantNoData, check: noLeak("\u0430gent:research:x")},
		{name: "prefix: resources/read percent-encoded key", cfg: "prefix", run: resource("agent%3Amain%3Ax"), want: wantNoData, check: noLeak("agent:main:x")},
		{name: "prefix: resources/read ../ literal", cfg: "prefix", run: resource("agent:research:../main"), want: wantOK, check: readsKey("agent:research:../main", all, "agent:main:x")},
		{name: "prefix: resources/read control", cfg: "prefix", run: resource("agent:research:x"), want: wantOK, check: readsKey("agent:research:x", prefixForbidden...)},
		{name: "prefix: resources/read current", cfg: "prefix", run: resource("current"), want: wantOK, check: readsKey(own, append(prefixForbidden, all)...)},
		{name: "prefix: resources/read main", cfg: "prefix", run: resource("main"), want: wantOK, check: readsKey(own, append(prefixForbidden, all)...)},
		{name: "prefix: resources/read agent:main:main", cfg: "prefix", run: resource(all), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "prefix: resources/list hides forbidden sessions", cfg: "prefix", run: func(e *env) outcome {
			res, err := e.c.ListResources(context.Background(), mcp.ListResourcesRequest{})
			if err != nil {
				return outcome{isError: true, status: "jsonrpc-error", text: err.Error()}
			}
			var uris []string
			for _, r := range res.Resources {
				uris = append(uris, r.URI)
			}
			return outcome{text: strings.Join(uris, "\n"), out: map[string]any{"uris": uris}}
		}, want: wantOK, leak: true, check: func(e *env, o outcome) string {
			for _, k := range prefixForbidden {
				for _, u := range strings.Split(o.text, "\n") {
					if u == "session://"+k {
						return "listed " + u
					}
				}
			}
			if !strings.Contains(o.text, "session://agent:research:x") {
				return "the visible session is not listed"
			}
			return ""
		}},
		{name: "prefix: sessions_list leaks nothing and counts filtered", cfg: "prefix", run: func(e *env) outcome {
			return e.tool("sessions_list", map[string]any{"limit": 100, "includeArchived": true})
		}, want: wantOK, leak: true, check: also(filtered(len(prefixForbidden), append(prefixForbidden, all)...), mentions("agent:research:x", own))},
		{name: "prefix: sessions_list filter on a forbidden key", cfg: "prefix", run: func(e *env) outcome {
			return e.tool("sessions_list", map[string]any{"filter": "researcher"})
		}, want: wantOK, leak: true, check: also(filtered(1, "agent:researcher:x"), func(e *env, o outcome) string {
			if num(o, "count") != 0 {
				return fmt.Sprintf("count = %d", num(o, "count"))
			}
			return ""
		})},
		{name: "prefix: sessions_list with messages leaks nothing", cfg: "prefix", run: func(e *env) outcome {
			return e.tool("sessions_list", map[string]any{"limit": 100, "messageLimit": 5})
		}, want: wantOK, leak: true, check: noLeak(prefixForbidden...)},
		{name: "prefix: sessions_search leaks nothing and counts filtered", cfg: "prefix", run: func(e *env) outcome {
			return e.tool("sessions_search", map[string]any{"query": "zebra", "limit": 20, "exclude_current": false})
		}, want: wantOK, leak: true, check: also(filtered(len(prefixForbidden), prefixForbidden...), mentions("agent:research:x"))},

		// ---- cross-agent reads (a preset with cross_agent unset) ----
		{name: "cross: control, own agent", cfg: "cross", run: historyOf("agent:main:x"), want: wantOK, check: readsKey("agent:main:x", "agent:other:x")},
		{name: "cross: history of agent:other:x", cfg: "cross", run: historyOf("agent:other:x"), want: wantForbidden, rule: "sessions.cross_agent"},
		{name: "cross: key of another agent's id", cfg: "cross", run: historyOf("agent:research:x"), want: wantForbidden, rule: "sessions.cross_agent"},
		{name: "cross: main-looking key owned by another agent", cfg: "cross", run: historyOf("agent:main:imported"), want: wantForbidden, rule: "sessions.cross_agent"},
		{name: "cross: unknown key of another agent", cfg: "cross", run: historyOf("agent:other:ghost"), want: wantForbidden, rule: "sessions.cross_agent"},
		{name: "cross: sessionId of agent:other:x", cfg: "cross", run: historyByID("agent:other:x"), want: wantForbidden, rule: "sessions.cross_agent"},
		{name: "cross: session_status agent:other:x", cfg: "cross", run: statusOf("agent:other:x"), want: wantForbidden, rule: "sessions.cross_agent"},
		{name: "cross: resources/read agent:other:x", cfg: "cross", run: resource("agent:other:x"), want: wantForbidden, rule: "sessions.cross_agent"},
		{name: "cross: sessions_list", cfg: "cross", run: func(e *env) outcome {
			return e.tool("sessions_list", map[string]any{"limit": 100})
		}, want: wantOK, leak: true, check: also(filtered(3, "agent:other:x", "agent:main:imported", "agent:research:x"), mentions("agent:main:x"))},
		{name: "cross: sessions_search", cfg: "cross", run: func(e *env) outcome {
			return e.tool("sessions_search", map[string]any{"query": "zebra", "limit": 20})
		}, want: wantOK, leak: true, check: filtered(3, "agent:other:x", "agent:main:imported", "agent:research:x")},

		// ---- no policy: no cross-agent restriction; invalid keys still refused ----
		{name: "open: other agent's session is visible", cfg: "open", run: historyOf("agent:other:x"), want: wantOK, check: readsKey("agent:other:x")},
		{name: "open: padded key refused", cfg: "open", run: historyOf(" agent:main:x"), want: wantForbidden, rule: "sessions.key"},
		{name: "open: look-alike key refused", cfg: "open", run: statusOf("\u0430gent:main:main"), want: wantForbidden, rule: "sessions.key"},
		{name: "open: over-long key refused", cfg: "open", run: historyOf("agent:main:" + strings.Repeat("x", 510)), want: wantForbidden, rule: "sessions.key"},

		// ---- tools.sessions.visibility ----
		{name: "visibility self: other session", cfg: "self", run: historyOf("agent:main:x"), want: wantForbidden, rule: "tools.sessions.visibility"},
		{name: "visibility self: own session", cfg: "self", run: historyOf("current"), want: wantOK},
		{name: "visibility self: sessions_list", cfg: "self", run: func(e *env) outcome {
			return e.tool("sessions_list", map[string]any{"limit": 100})
		}, want: wantOK, leak: true, check: also(filtered(len(seeded)-4, "agent:main:x", "agent:other:x"), func(e *env, o outcome) string {
			if o.out["visibility"] != "self" { // the rule in force is stated; what it hides is not counted
				return fmt.Sprintf("visibility = %v, want self", o.out["visibility"])
			}
			return ""
		})},
		{name: "visibility tree: own child", cfg: "tree", run: historyOf("agent:main:subagent:1"), want: wantOK},
		{name: "visibility tree: unrelated session", cfg: "tree", run: historyOf("agent:main:x"), want: wantForbidden, rule: "tools.sessions.visibility"},
		{name: "visibility tree: resources/read unrelated", cfg: "tree", run: resource("agent:other:x"), want: wantForbidden, rule: "tools.sessions.visibility"},
		{name: "visibility agent: own agent", cfg: "agent", run: historyOf("agent:main:x"), want: wantOK},
		{name: "visibility agent: other agent", cfg: "agent", run: historyOf("agent:other:x"), want: wantForbidden, rule: "tools.sessions.visibility"},
		{name: "visibility agent: sessionId of other agent", cfg: "agent", run: historyByID("agent:other:x"), want: wantForbidden, rule: "tools.sessions.visibility"},

		// ---- tools.allow / tools.deny (kebab case in the config) ----
		{name: "tools: kebab allow entry lists and runs sessions_list", cfg: "tools", run: func(e *env) outcome {
			return e.tool("sessions_list", nil)
		}, want: wantOK, check: listedTool("sessions_list")},
		{name: "tools: kebab allow entry lists session_status", cfg: "tools", run: statusOf("current"), want: wantOK, check: listedTool("session_status")},
		{name: "tools: not in tools.allow (refused, not listed)", cfg: "tools", run: hiddenAndRefused("sessions_search", map[string]any{"query": "zebra"}), want: wantForbidden, rule: "tools.allow"},
		{name: "tools: in tools.deny by kebab name (refused, not listed)", cfg: "tools", run: hiddenAndRefused("agents_list", nil), want: wantForbidden, rule: "tools.deny"},
		{name: "tools: hidden tool refused without data", cfg: "tools", run: hiddenAndRefused("sessions_search", map[string]any{"query": "zebra"}), want: wantNoData, check: noLeak("agent:main:x", "agent:other:x")},
		{name: "tools: kebab call name of a denied tool", cfg: "tools", run: func(e *env) outcome { return e.tool("agents-list", nil) }, want: wantNoData, check: noLeak("main")},

		// ---- approval on the read-session class ----
		{name: "approval elicit: accepted proceeds", cfg: "elicit", client: "accept", run: historyOf("agent:main:x"), want: wantOK,
			check: also(readsKey("agent:main:x"), asked("sessions_history", "agent:main:x"))},
		{name: "approval elicit: declined", cfg: "elicit", client: "decline", run: historyOf("agent:main:x"), want: wantForbidden, rule: "approval.read-session",
			check: also(asked("sessions_history", "agent:main:x"), mentions("declined"))},
		{name: "approval elicit: cancelled", cfg: "elicit", client: "cancel", run: historyOf("agent:main:x"), want: wantForbidden, rule: "approval.read-session"},
		{name: "approval elicit: accepted with approve=false", cfg: "elicit", client: "accept-false", run: historyOf("agent:main:x"), want: wantForbidden, rule: "approval.read-session"},
		{name: "approval elicit: accepted with a non-boolean approve", cfg: "elicit", client: "accept-junk", run: historyOf("agent:main:x"), want: wantForbidden, rule: "approval.read-session"},
		{name: "approval elicit: the client's handler fails", cfg: "elicit", client: "broken", run: historyOf("agent:main:x"), want: wantForbidden, rule: "approval.read-session"},
		{name: "approval elicit: client without elicitation", cfg: "elicit", client: "plain", run: historyOf("agent:main:x"), want: wantForbidden, rule: "approval.read-session",
			check: mentions("[approval]", "elicitation")},
		{name: "approval elicit: listing needs approval too", cfg: "elicit", client: "plain", run: func(e *env) outcome { return e.tool("sessions_list", nil) }, want: wantForbidden, rule: "approval.read-session"},
		{name: "approval elicit: policy refuses before asking", cfg: "elicit-prefix", client: "accept", run: historyOf("agent:main:x"), want: wantForbidden, rule: "sessions.key_prefix", check: notAsked},
		{name: "approval elicit: sessionId target approved then checked", cfg: "elicit-prefix", client: "accept", run: historyByID("agent:main:x"), want: wantForbidden, rule: "sessions.key_prefix"},
		{name: "approval auto: accepted proceeds without a note", cfg: "auto", client: "accept", run: historyOf("agent:main:x"), want: wantOK,
			check: also(asked("sessions_history", "agent:main:x"), func(e *env, o outcome) string {
				if strings.Contains(o.text, "Note:") {
					return "a note although the client was asked"
				}
				return ""
			})},
		{name: "approval auto: declined", cfg: "auto", client: "decline", run: historyOf("agent:main:x"), want: wantForbidden, rule: "approval.read-session"},
		{name: "approval auto: client without elicitation proceeds with a note", cfg: "auto", client: "plain", run: historyOf("agent:main:x"), want: wantOK,
			check: also(readsKey("agent:main:x"), mentions("Note:", "[approval] read-session"))},
		{name: "approval deny: tool hidden and refused", cfg: "deny", client: "accept", run: hiddenAndRefused("sessions_history", map[string]any{"key": "agent:main:x"}), want: wantForbidden, rule: "approval.read-session", check: notAsked},
		{name: "approval deny: refused without data or asking", cfg: "deny", client: "accept", run: hiddenAndRefused("sessions_history", map[string]any{"key": "agent:main:x"}), want: wantNoData,
			check: also(notAsked, noLeak("agent:main:x"))},
		{name: "approval deny: every read tool hidden", cfg: "deny", client: "plain", run: func(e *env) outcome {
			res, err := e.c.ListTools(context.Background(), mcp.ListToolsRequest{})
			if err != nil {
				return outcome{isError: true, status: "jsonrpc-error", text: err.Error()}
			}
			var names []string
			for _, tl := range res.Tools {
				if strings.Contains(tl.Description, "[action class: read-session]") {
					names = append(names, tl.Name)
				}
			}
			return outcome{text: strings.Join(names, ",")}
		}, want: wantOK, leak: true, check: func(e *env, o outcome) string {
			if o.text != "" {
				return "read-session tools listed: " + o.text
			}
			return ""
		}},
	}
}

// judge says whether a row met its expectation and whether it was a bypass.
func judge(e *env, r matrixRow, o outcome) (problem string, bypass bool) {
	switch r.want {
	case wantForbidden:
		if !o.refused() {
			// A bypass when the gate let the call reach its handler: it
			// succeeded, or failed for another reason (e.g. "not found",
			// which tells whether the session exists). A JSON-RPC error
			// is a refusal in the wrong form, not a bypass.
			return "want a forbidden refusal, got " + o.String(), !o.isError || o.status == "error"
		}
		if o.rule != r.rule {
			return fmt.Sprintf("rule %q, want %q (%s)", o.rule, r.rule, o.text), false
		}
		if !strings.Contains(o.text, r.rule) {
			return "the message does not name the rule: " + o.text, false
		}
		if o.out != nil {
			if msg, _ := o.out["message"].(string); msg == "" {
				return "no message in the structured refusal", false
			}
		}
	case wantNoData:
		if !o.isError {
			return "want an error without data, got " + o.String(), true
		}
	case wantOK:
		if o.isError {
			return "want success, got " + o.String(), false
		}
	}
	if r.check != nil {
		if p := r.check(e, o); p != "" {
			return p, r.leak
		}
	}
	return "", false
}

func TestPolicyMatrix(t *testing.T) {
	for _, era := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(era, func(t *testing.T) {
			t.Parallel() // the eras share nothing: each row builds its own server and database
			rows := matrixRows()
			var bypasses, known []string
			knownBypasses := 0
			for _, r := range rows {
				t.Run(r.name, func(t *testing.T) {
					clientKind := r.client
					if clientKind == "" {
						clientKind = "plain"
					}
					e := newEnv(t, r.cfg, clientKind, era)
					o := r.run(e)
					problem, bypass := judge(e, r, o)
					switch {
					case r.knownBug != "" && problem != "":
						known = append(known, r.name)
						kind := "known failure"
						if bypass {
							kind = "known BYPASS"
							knownBypasses++
						}
						t.Logf("%s (%s): %s", kind, r.knownBug, problem)
					case r.knownBug != "":
						t.Errorf("row marked as a known bug (%s) passed: remove the mark (%s)", r.knownBug, o)
					case bypass:
						bypasses = append(bypasses, r.name)
						t.Errorf("BYPASS: %s", problem)
					case problem != "":
						t.Error(problem)
					}
				})
			}
			t.Logf("policy matrix (%s): %d rows, %d bypasses, %d known failures outside policy/ (%d of them bypasses)", era, len(rows), len(bypasses), len(known), knownBypasses)
			for _, b := range bypasses {
				t.Logf("  bypass: %s", b)
			}
			for _, k := range known {
				t.Logf("  known: %s", k)
			}
			if len(bypasses) > 0 {
				t.Fatalf("%d bypasses", len(bypasses))
			}
		})
	}
}
