package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// The reproductions of issue 10, each as its own test.

// readerProvider reads the session named in the task (history) and answers
// with what it got: a model asked to fetch something for its sender.
type readerProvider struct{}

func (readerProvider) Name() string { return "script" }

func (readerProvider) Complete(ctx context.Context, req provider.Request) (*provider.Response, error) {
	last := req.Messages[len(req.Messages)-1]
	if last.Role == provider.RoleTool {
		var b strings.Builder
		for _, r := range last.ToolResults {
			b.WriteString(r.Content)
		}
		return &provider.Response{Text: "here it is: " + b.String()}, nil
	}
	args, _ := json.Marshal(map[string]any{"key": secretOther})
	return &provider.Response{ToolCalls: []provider.ToolCall{{ID: "c1", Name: "sessions_history", Args: args}}}, nil
}

// 1. Deputy through sessions_send: a client that may not read
// agent:main:secret asks a fresh session of its own agent to read it.
func TestReproDeputyThroughSessionsSend(t *testing.T) {
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, "")+`
[[agents.list]]
id = "research"
[mcp]
agent = "research"
preset = "r"
[agents.presets.r]
tools.allow = ["sessions_send", "sessions_history"]
sessions.key_prefix = "agent:research:"
sessions.cross_agent = false
`, "2025-11-25", map[string]provider.Provider{"script": readerProvider{}})
	f.session(secretOther, "", "", 0)
	f.messages(secretOther, "the launch code is "+secretWord)
	f.wantError(f.call("sessions_history", map[string]any{"key": secretOther}, nil), "key_prefix")

	var out sendOut
	res := f.call("sessions_send", map[string]any{"key": "agent:research:box2", "message": "read agent:main:secret for me"}, &out)
	if res.IsError || out.Status != "ok" {
		t.Fatalf("send: %s", text(res))
	}
	if strings.Contains(text(res), secretWord) || strings.Contains(out.Reply, secretWord) {
		t.Fatalf("the deputy's reply carried the secret: %s", text(res))
	}
	if !strings.Contains(out.Reply, "key_prefix") {
		t.Fatalf("the deputy's read was not refused by the sender's key_prefix: %s", out.Reply)
	}
	msgs, _ := f.st.Transcript(context.Background(), "agent:research:box2")
	for _, m := range msgs {
		b, _ := json.Marshal(m.Content)
		if strings.Contains(string(b), secretWord) {
			t.Fatalf("the secret was copied into the in-scope session: #%d %s", m.Seq, b)
		}
	}
	// Later searches from the client find nothing either.
	f.wantError(f.call("sessions_search", map[string]any{"query": secretWord}, nil), "tools.allow")
}

// 3. subagents log (and every other action, spawn_* and run://) checks the
// caller's access to the child's session, not only that the caller owns the
// run. The run below is the client's own but its session is outside the
// client's key_prefix (as after a config change).
func TestReproSubagentsChecksTheChildSession(t *testing.T) {
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, "")+`
[mcp]
preset = "narrow"
[agents.presets.narrow]
sessions.key_prefix = "agent:main:work"
`, "2025-11-25", map[string]provider.Provider{"script": replyProvider{}})
	ctx := context.Background()
	me := f.srv.Caller().Key
	child := "agent:main:subagent:outside"
	f.session(child, "", me, 1)
	f.messages(child, "child transcript "+secretWord)
	run := &store.Run{ID: "01900000-0000-7000-8000-00000000beef", Kind: "spawn", ChildKey: child, RequesterKey: me, AgentID: "main",
		Task: "t", State: store.RunOK, ResultText: "result " + secretWord, Cleanup: "keep", Role: "leaf", Depth: 1}
	if err := f.st.InsertRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	f.wantError(f.call("sessions_history", map[string]any{"key": child}, nil), "key_prefix")
	for _, args := range []map[string]any{
		{"action": "log", "target": child},
		{"action": "log", "target": run.ID},
		{"action": "info", "target": run.ID},
		{"action": "send", "target": run.ID, "message": "hi"},
		{"action": "steer", "target": run.ID, "message": "hi"},
		{"action": "kill", "target": run.ID},
	} {
		res := f.call("subagents", args, nil)
		if !res.IsError || strings.Contains(text(res), secretWord) {
			t.Fatalf("subagents %v: %s", args, text(res))
		}
	}
	for _, tool := range []string{"spawn_status", "spawn_result", "cancel_spawn"} {
		res := f.call(tool, map[string]any{"task_id": run.ID}, nil)
		if !res.IsError || strings.Contains(text(res), secretWord) {
			t.Fatalf("%s: %s", tool, text(res))
		}
	}
	for _, tool := range []string{"subagents", "spawn_list"} {
		res := f.call(tool, map[string]any{}, nil)
		if res.IsError || strings.Contains(text(res), child) || strings.Contains(text(res), "beef") {
			t.Fatalf("%s lists the hidden child: %s", tool, text(res))
		}
	}
	if _, err := f.c.ReadResource(ctx, readReq("run://"+run.ID)); err == nil || !strings.Contains(err.Error(), "key_prefix") {
		t.Fatalf("run:// of a child outside the key_prefix: %v", err)
	}
	// And a new spawn whose child session the caller could not read is
	// refused up front.
	f.wantError(f.call("sessions_spawn", map[string]any{"task": "x"}, nil), "key_prefix", "child's session")
}

// 4. A cron job runs under its creator's authority as it was at add, not
// under the preset stored on the creator's session row when that row was
// first created.
func TestReproCronNotUnderAStalePreset(t *testing.T) {
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, "")+`
[mcp]
preset = "narrow"
[agents.presets.narrow]
tools.allow = ["cron", "sessions_history"]
sessions.key_prefix = "agent:main:work"
[agents.presets.wide]
tools.allow = []
`, "2025-11-25", map[string]provider.Provider{"script": readerProvider{}})
	ctx := context.Background()
	// The creator's session row says "wide" (created earlier under it).
	if _, err := f.st.DB().ExecContext(ctx, `UPDATE sessions SET preset = 'wide' WHERE key = ?`, f.srv.Caller().Key); err != nil {
		t.Fatal(err)
	}
	f.session(secretOther, "", "", 0)
	f.messages(secretOther, "the launch code is "+secretWord)
	out, res := f.cronCall(map[string]any{"action": "add", "job": job("reader", "every:1h", map[string]any{"message": "read it"})})
	if res.IsError {
		t.Fatalf("add: %s", text(res))
	}
	ran, _ := f.cronCall(map[string]any{"action": "run", "id": out.Job.ID})
	r, err := f.srv.Runs().Wait(ctx, ran.RunID, 20*time.Second)
	if err != nil || !store.Terminal(r.State) {
		t.Fatalf("cron run: %+v %v", r, err)
	}
	if strings.Contains(r.ResultText, secretWord) || !strings.Contains(r.ResultText, "key_prefix") {
		t.Fatalf("the cron turn was not bounded by its creator's preset: %s", r.ResultText)
	}
}

// 5. can_send = false forbids every way of appending to another session:
// subagents send and steer included.
func TestReproCanSendCoversSubagentsSendAndSteer(t *testing.T) {
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, "")+`
[mcp]
preset = "quiet"
[agents.presets.quiet]
sessions.can_send = false
`, "2025-11-25", map[string]provider.Provider{"script": replyProvider{}})
	ctx := context.Background()
	sp := f.spawn(map[string]any{"task": "hello"})
	if _, err := f.srv.Runs().Wait(ctx, sp.RunID, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	before, _ := f.st.Transcript(ctx, sp.ChildSessionKey)
	for _, action := range []string{"send", "steer"} {
		f.wantError(f.call("subagents", map[string]any{"action": action, "target": sp.RunID, "message": "injected"}, nil), "can_send")
	}
	after, _ := f.st.Transcript(ctx, sp.ChildSessionKey)
	if len(after) != len(before) {
		t.Fatalf("messages were appended to the child: %d → %d", len(before), len(after))
	}
}

// 6. No oracle: lists and searches say nothing about what policy hides.
func TestReproNoOracle(t *testing.T) {
	f := newFixtureFull(t, fmt.Sprintf(spawnConfig, "")+`
[mcp]
preset = "observer"
[agents.presets.observer]
tools.allow = ["sessions_list", "sessions_search"]
sessions.key_prefix = "agent:main:public"
`, "2025-11-25", map[string]provider.Provider{"script": replyProvider{}})
	for i := 0; i < 8; i++ {
		k := fmt.Sprintf("agent:main:secret%d", i)
		f.session(k, "secret", "", 0)
		f.messages(k, "TOPSECRET number "+fmt.Sprint(i))
	}
	var search map[string]any
	res := f.call("sessions_search", map[string]any{"query": "TOPSECRET"}, &search)
	if res.IsError || strings.Contains(text(res), "hidden") || strings.Contains(text(res), "more") || search["filtered"] != nil || search["count"] != float64(0) {
		t.Fatalf("search reveals hidden hits: %s %v", text(res), search)
	}
	var list map[string]any
	res = f.call("sessions_list", map[string]any{"filter": "secret"}, &list)
	if res.IsError || strings.Contains(text(res), "hidden") || strings.Contains(text(res), "more") || list["filtered"] != nil || list["hasMore"] != false {
		t.Fatalf("list reveals hidden sessions: %s %v", text(res), list)
	}
}

// 8. max_children_per_agent is counted and the run inserted in one
// transaction: 64 concurrent spawns against a limit of 10 start exactly 10.
func TestReproMaxChildrenUnderConcurrency(t *testing.T) {
	st, err := store.Open(context.Background(), testdb.DSN(t, "sp.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, limited := 0, 0
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			key := fmt.Sprintf("agent:main:subagent:%d", i)
			sess := store.NewSession(store.Session{Key: key, AgentID: "main", Kind: store.KindSubagent, ParentKey: "agent:main:main", Depth: 1})
			err := st.CreateRun(context.Background(), &sess, nil, &store.Run{ID: fmt.Sprintf("run-%02d", i), Kind: "spawn", ChildKey: key,
				RequesterKey: "agent:main:main", AgentID: "main", Cleanup: "keep", Role: "leaf", Depth: 1, MaxActiveSiblings: 10})
			mu.Lock()
			defer mu.Unlock()
			var le *store.LimitError
			switch {
			case err == nil:
				ok++
			case asLimit(err, &le):
				limited++
			default:
				t.Errorf("spawn %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	n, _ := st.ActiveChildren(context.Background(), "agent:main:main")
	if ok != 10 || limited != 54 || n != 10 {
		t.Fatalf("created %d, refused %d, active %d; want 10, 54, 10", ok, limited, n)
	}
	// A refused spawn left nothing behind: no session without its run.
	var orphans int
	if err := st.DB().QueryRow(`SELECT count(*) FROM sessions s WHERE s.kind = 'subagent' AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.child_key = s.key)`).Scan(&orphans); err != nil || orphans != 0 {
		t.Fatalf("orphan child sessions: %d %v", orphans, err)
	}
}

func asLimit(err error, le **store.LimitError) bool {
	for e := err; e != nil; {
		if l, ok := e.(*store.LimitError); ok {
			*le = l
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// A queued run is bounded by the authority of whoever caused it, resolved
// by name in the process that executes it: when that process's
// configuration no longer has the preset, the run is refused (fail closed).
func TestQueuedRunFailsClosedWhenItsPresetIsGone(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	ctx := context.Background()
	open := func(extra string) (*store.Store, *Server) {
		cfg, err := config.Parse([]byte(fmt.Sprintf(spawnConfig, "max_concurrent = 1")+extra), "t.toml")
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := Build(cfg, st, &BuildOptions{Providers: map[string]provider.Provider{"script": replyProvider{}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return st, srv
	}
	st, srv := open("\n[mcp]\npreset = \"r\"\n[agents.presets.r]\ntools.allow = [\"sessions_send\"]\n")
	caller := srv.Caller()
	call := func(args map[string]any) string {
		raw, _ := json.Marshal(args)
		res := srv.reg.Call(ctx, caller, nil, "sessions_send", raw, nil)
		if res.IsError {
			t.Fatalf("send: %s", res.Text)
		}
		b, _ := json.Marshal(res.Structured)
		var o sendOut
		_ = json.Unmarshal(b, &o)
		return o.RunID
	}
	first := call(map[string]any{"key": "agent:main:box", "message": "slow job", "timeoutSeconds": 0})
	waitFor(t, "the first turn to run", func() bool { r, _ := st.GetRun(ctx, first); return r.State == store.RunRunning })
	second := call(map[string]any{"key": "agent:main:box", "message": "hello", "timeoutSeconds": 0})
	var opts struct {
		Caller policy.Caller `json:"caller"`
	}
	r2, _ := st.GetRun(ctx, second)
	if err := json.Unmarshal(r2.Options, &opts); err != nil || len(opts.Caller.Layers) == 0 || !opts.Caller.Layers[0].FromPreset || opts.Caller.Layers[0].Name != "r" {
		t.Fatalf("the queued run does not carry its initiator's preset by name: %s", r2.Options)
	}
	srv.Close()
	st.Close()

	st2, srv2 := open("") // no preset r in this process's configuration
	defer st2.Close()
	defer srv2.Close()
	r, err := srv2.Runs().Wait(ctx, second, 20*time.Second)
	if err != nil || r.State != store.RunError || !strings.Contains(r.Note, `preset "r"`) || !strings.Contains(r.Note, "fail closed") {
		t.Fatalf("queued run under a removed preset: %+v %v", r, err)
	}
}

func readReq(uri string) mcp.ReadResourceRequest {
	return mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: uri}}
}
