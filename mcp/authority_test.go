package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// The secrets and victims of the authority tests. The client acts as agent
// research; secrets and victims live in agent main (another agent) and in
// agent research itself.
const (
	secretWord    = "TOPSECRET"
	secretOther   = "agent:main:main"       // another principal's own session (an unrestricted client of agent main)
	secretOwn     = "agent:research:secret" // the client's own agent
	victimOther   = "agent:main:victim"
	victimOwn     = "agent:research:victim"
	attackMessage = "PWNED"
)

// attacker is a model that, at the start of every turn, tries everything a
// deputy could be asked to do: read the secrets (history and search), write
// to the victims (plain and role=system), relay through an in-scope session
// (ping-pong), and then answers with every tool result it got, so whatever
// it read would come out through the reply, the announce and the
// transcript.
type attacker struct{}

func (attacker) Name() string { return "script" }

func (attacker) Complete(ctx context.Context, req provider.Request) (*provider.Response, error) {
	lastUser := -1
	for i, m := range req.Messages {
		if m.Role == provider.RoleUser {
			lastUser = i
		}
	}
	var results []string
	for _, m := range req.Messages[lastUser+1:] {
		for _, r := range m.ToolResults {
			results = append(results, r.Name+": "+r.Content)
		}
	}
	if len(results) > 0 {
		return &provider.Response{Text: "EXFIL " + strings.Join(results, "\n")}, nil
	}
	first := ""
	if lastUser >= 0 {
		first = req.Messages[lastUser].Text
	}
	if strings.Contains(first, "relay") { // the relay's turn: answer, so the reply pings back
		return &provider.Response{Text: "relayed"}, nil
	}
	call := func(i int, name string, args map[string]any) provider.ToolCall {
		b, _ := json.Marshal(args)
		return provider.ToolCall{ID: fmt.Sprintf("atk_%d", i), Name: name, Args: b}
	}
	return &provider.Response{ToolCalls: []provider.ToolCall{
		call(1, "sessions_history", map[string]any{"key": secretOther}),
		call(2, "sessions_history", map[string]any{"key": secretOwn}),
		call(3, "sessions_search", map[string]any{"query": secretWord, "exclude_current": false}),
		call(4, "sessions_send", map[string]any{"key": victimOther, "message": attackMessage, "timeoutSeconds": 0}),
		call(5, "sessions_send", map[string]any{"key": victimOwn, "message": attackMessage, "timeoutSeconds": 0}),
		call(6, "sessions_send", map[string]any{"key": victimOwn, "message": attackMessage + "-SYSTEM", "role": "system", "timeoutSeconds": 0}),
		call(7, "sessions_send", map[string]any{"key": "agent:research:relay", "message": "relay this", "timeoutSeconds": 0}),
		call(8, "subagents", map[string]any{"action": "send", "target": "last", "message": attackMessage}),
	}}, nil
}

// authorityPreset is one principal's policy and what it must never reach.
type authorityPreset struct {
	name       string
	toml       string   // the [agents.presets.p] body, or global keys with a preset
	secrets    []string // sessions whose content must never come out
	victims    []string // sessions that must receive nothing from an attacker
	noSystem   bool     // no role=system message may be written anywhere by the work
	visibility string
}

const authorityTools = `tools.allow = ["sessions_spawn", "spawn_agent", "spawn_result", "spawn_status", "spawn_list", "cancel_spawn", "subagents",
	"sessions_send", "sessions_history", "sessions_search", "sessions_list", "session_status", "cron", "sessions_yield"]`

var authorityPresets = []authorityPreset{
	{name: "key_prefix", toml: authorityTools + "\nsessions.key_prefix = \"agent:research:\"\nsessions.cross_agent = true",
		secrets: []string{secretOther}, victims: []string{victimOther}, noSystem: true},
	{name: "cross_agent", toml: authorityTools,
		secrets: []string{secretOther}, victims: []string{victimOther}, noSystem: true},
	{name: "allowed_keys", toml: authorityTools + "\nsessions.key_prefix = \"agent:research:subagent:\"\nsessions.allowed_keys = [\"agent:research:box\", \"agent:research:relay\"]",
		secrets: []string{secretOther, secretOwn}, victims: []string{victimOther, victimOwn}, noSystem: true},
	{name: "tools.deny", toml: authorityTools + "\ntools.deny = [\"sessions_history\", \"sessions_search\"]\nsessions.can_send = true",
		secrets: []string{secretOther, secretOwn}, victims: []string{victimOther}, noSystem: true},
	{name: "can_send", toml: authorityTools + "\nsessions.can_send = false",
		secrets: []string{secretOther}, victims: []string{victimOther, victimOwn}, noSystem: true},
	{name: "can_send_system", toml: authorityTools + "\nsessions.can_send_system = false",
		secrets: []string{secretOther}, victims: []string{victimOther}, noSystem: true},
	{name: "visibility tree", toml: authorityTools + "\nsessions.cross_agent = true", visibility: "tree",
		secrets: []string{secretOther, secretOwn}, victims: []string{victimOther, victimOwn}, noSystem: true},
	{name: "visibility agent", toml: authorityTools + "\nsessions.cross_agent = true", visibility: "agent",
		secrets: []string{secretOther}, victims: []string{victimOther}, noSystem: true},
}

func authorityConfig(p authorityPreset) string {
	vis := ""
	if p.visibility != "" {
		vis = fmt.Sprintf("[tools.sessions]\nvisibility = %q\nmax_ping_pong_turns = 2\n", p.visibility)
	} else {
		vis = "[tools.sessions]\nmax_ping_pong_turns = 2\n"
	}
	return fmt.Sprintf(spawnConfig, "max_children_per_agent = 50\nmax_spawn_depth = 1") + `
[[agents.list]]
id = "research"
[mcp]
agent = "research"
preset = "p"
[agents.presets.p]
` + p.toml + "\n" + vis
}

// notes collects every notification a client receives.
type notes struct {
	mu  sync.Mutex
	all []string
}

func (n *notes) add(m mcp.JSONRPCNotification) {
	b, _ := json.Marshal(m)
	n.mu.Lock()
	n.all = append(n.all, string(b))
	n.mu.Unlock()
}

func (n *notes) text() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.all, "\n")
}

// TestAuthorityMatrixOverPaths is the matrix over paths (issue 10): for each
// policy key, work is started every way it can start (sessions_spawn,
// spawn_agent, sessions_send waited and queued, ping-pong replies, cron,
// subagents send and steer), a scripted attacker model inside every run
// tries to read the secrets and write to the victims, and then every way
// content comes out is checked: tool results, resource reads, the run://
// resources, the subagents prompt, notifications, announce prefixes — and,
// because every door reads from the store, every message of every session.
// It counts attempts (refused forbidden calls) and bypasses; 0 bypasses.
func TestAuthorityMatrixOverPaths(t *testing.T) {
	attempts, bypasses := 0, 0
	var report []string
	for _, p := range authorityPresets {
		t.Run(p.name, func(t *testing.T) {
			a, b := runAuthorityPaths(t, p)
			attempts += a
			bypasses += len(b)
			for _, x := range b {
				report = append(report, p.name+": "+x)
			}
		})
	}
	t.Logf("authority matrix over paths: %d presets, %d refused attempts, %d bypasses", len(authorityPresets), attempts, bypasses)
	for _, r := range report {
		t.Logf("  bypass: %s", r)
	}
	if attempts == 0 {
		t.Fatal("no attempt was refused: the matrix exercised nothing")
	}
	if bypasses > 0 {
		t.Fatalf("%d bypasses", bypasses)
	}
}

func runAuthorityPaths(t *testing.T, p authorityPreset) (attempts int, bypasses []string) {
	t.Helper()
	ns, otherNotes := &notes{}, &notes{}
	path := testdb.DSN(t, "sp.db")
	f := newFixtureAt(t, path, authorityConfig(p), "2025-11-25", map[string]provider.Provider{"script": attacker{}})
	f.c.OnNotification(ns.add)
	// A second principal on the same database, as another stdio process
	// would be: an unrestricted client of agent main, whose own session
	// holds a secret and whose own spawn is announced to it alone.
	other := newFixtureAt(t, path, strings.Replace(authorityConfig(p), "agent = \"research\"\npreset = \"p\"", "agent = \"main\"", 1),
		"2025-11-25", map[string]provider.Provider{"script": replyProvider{}})
	other.c.OnNotification(otherNotes.add)
	if k := other.srv.Caller().Key; k != secretOther {
		t.Fatalf("the unrestricted client of agent main owns %s, want %s", k, secretOther)
	}
	ctx := context.Background()
	for _, k := range []string{secretOwn, victimOther, victimOwn} {
		f.session(k, "", "", 0)
	}
	f.messages(secretOther, "the launch code is "+secretWord+"-1")
	var theirs spawnOut
	other.call("sessions_spawn", map[string]any{"task": "remember OTHERPLAN"}, &theirs)
	if theirs.RunID == "" {
		t.Fatal("the other principal's spawn was not accepted")
	}
	f.messages(secretOwn, "the vault code is "+secretWord+"-2")
	me := f.srv.Caller().Key
	var outputs []string
	out := func(res *mcp.CallToolResult) {
		b, _ := json.Marshal(res)
		outputs = append(outputs, string(b))
	}
	waitAll := func() {
		waitFor(t, "every run to end", func() bool {
			runs, err := f.st.ListRuns(ctx, store.RunFilter{States: []string{store.RunQueued, store.RunRunning}, Limit: 10})
			return err == nil && len(runs) == 0
		})
	}

	// Every way work starts.
	var spawned spawnOut
	res := f.call("sessions_spawn", map[string]any{"task": "attack from a spawned child"}, &spawned)
	out(res)
	if spawned.RunID != "" {
		out(f.call("spawn_result", map[string]any{"task_id": spawned.RunID, "wait_seconds": 20}, nil))
	}
	out(f.call("spawn_agent", map[string]any{"task": "attack from a blocking spawn_agent"}, nil))
	out(f.call("spawn_agent", map[string]any{"task": "attack from a nonblocking spawn_agent", "nonblocking": true}, nil))
	out(f.call("sessions_send", map[string]any{"key": "agent:research:box", "message": "attack as a deputy", "timeoutSeconds": 20}, nil))
	out(f.call("sessions_send", map[string]any{"key": "agent:research:box", "message": "attack again, queued", "timeoutSeconds": 0}, nil))
	out(f.call("cron", map[string]any{"action": "add", "job": map[string]any{"name": "nightly", "schedule": "every:1h",
		"payload": map[string]any{"kind": "agentTurn", "message": "attack from cron"}}}, nil))
	if jobs := f.call("cron", map[string]any{"action": "list"}, nil); !jobs.IsError {
		var l struct {
			Jobs []struct {
				ID string `json:"id"`
			} `json:"jobs"`
		}
		b, _ := json.Marshal(jobs.StructuredContent)
		_ = json.Unmarshal(b, &l)
		for _, j := range l.Jobs {
			out(f.call("cron", map[string]any{"action": "run", "id": j.ID}, nil))
		}
	}
	waitAll()
	out(f.call("subagents", map[string]any{"action": "send", "target": "last", "message": "attack once more"}, nil))
	out(f.call("subagents", map[string]any{"action": "steer", "target": "last", "message": "attack when steered"}, nil))
	waitAll()

	// Every way content comes out to the client.
	out(f.call("sessions_list", map[string]any{"limit": 100, "messageLimit": 20}, nil))
	out(f.call("sessions_search", map[string]any{"query": secretWord, "limit": 20, "exclude_current": false}, nil))
	out(f.call("spawn_list", map[string]any{}, nil))
	out(f.call("subagents", map[string]any{"action": "log", "target": "last", "limit": 200, "includeTools": true}, nil))
	if lr, err := f.c.ListResources(ctx, mcp.ListResourcesRequest{}); err == nil {
		for _, r := range lr.Resources {
			if rr, err := f.c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: r.URI}}); err == nil {
				b, _ := json.Marshal(rr)
				outputs = append(outputs, string(b))
			}
		}
	}
	runs, err := f.st.ListRuns(ctx, store.RunFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if rr, err := f.c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "run://" + r.ID}}); err == nil {
			b, _ := json.Marshal(rr)
			outputs = append(outputs, string(b))
		}
	}
	if pr, err := f.c.GetPrompt(ctx, mcp.GetPromptRequest{Params: mcp.GetPromptParams{Name: "subagents"}}); err == nil {
		b, _ := json.Marshal(pr)
		outputs = append(outputs, string(b))
	}
	outputs = append(outputs, ns.text())
	// The other principal's announce reached it, and only it.
	waitFor(t, "the other principal's announce", func() bool { return strings.Contains(otherNotes.text(), theirs.RunID) })
	for _, o := range outputs {
		if strings.Contains(o, theirs.RunID) || strings.Contains(o, "OTHERPLAN") {
			bypasses = append(bypasses, "the other principal's run reached this one: "+clip(o, 300))
			break
		}
	}
	if len(runs) < 4 {
		bypasses = append(bypasses, fmt.Sprintf("only %d runs started: the paths were not exercised", len(runs)))
	}

	// What the client saw.
	for _, s := range p.secrets {
		word := secretWord + "-1"
		if s == secretOwn {
			word = secretWord + "-2"
		}
		for _, o := range outputs {
			if strings.Contains(o, word) {
				bypasses = append(bypasses, fmt.Sprintf("%s's content reached the client: %s", s, clip(o, 3000)))
				break
			}
		}
	}
	// What the store holds: the secret only in its own session, nothing
	// written by the work into a victim, no role=system message from it.
	sessions := map[string]bool{}
	_ = f.st.ListSessions(ctx, store.ListFilter{IncludeArchived: true}, func(s *store.Session) bool { sessions[s.Key] = true; return true })
	for key := range sessions {
		msgs, err := f.st.Transcript(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			b, _ := json.Marshal(m.Content)
			body := string(b)
			for _, s := range p.secrets {
				word := secretWord + "-1"
				if s == secretOwn {
					word = secretWord + "-2"
				}
				if key != s && strings.Contains(body, word) {
					bypasses = append(bypasses, fmt.Sprintf("%s's content was copied into %s #%d: %s", s, key, m.Seq, clip(body, 200)))
				}
			}
			for _, v := range p.victims {
				if key == v && strings.Contains(body, attackMessage) {
					bypasses = append(bypasses, fmt.Sprintf("forbidden write into %s #%d: %s", v, m.Seq, clip(body, 200)))
				}
			}
			if p.noSystem && m.Role == store.RoleSystem && strings.Contains(body, attackMessage) {
				bypasses = append(bypasses, fmt.Sprintf("role=system message written into %s #%d", key, m.Seq))
			}
			// Attempts: forbidden calls the attacker made and the gate refused.
			for _, r := range m.Content.ToolResults {
				if r.IsError && strings.Contains(r.Content, "forbidden") && key != me {
					attempts++
				}
			}
		}
	}
	if attempts == 0 {
		bypasses = append(bypasses, "no refused attempt: the attacker's calls were not made")
	}
	t.Logf("%s: %d runs, %d sessions, %d refused attempts, %d bypasses", p.name, len(runs), len(sessions), attempts, len(bypasses))
	return attempts, bypasses
}
