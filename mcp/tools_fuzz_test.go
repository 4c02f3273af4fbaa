package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// fuzzScript is the scripted model behind FuzzToolCall: every child answers
// at once, so a blocking tool (spawn_agent, spawn_result wait_seconds,
// sessions_send, subagents send) ends as soon as its run does.
const fuzzScript = `{"conversations": [
 {"match": "yield", "turns": [{"tool_calls": [{"name": "sessions_yield", "args": {"result": {"task": "{{task}}"}}}]}, {"text": "yielded"}]},
 {"match": "list", "turns": [{"tool_calls": [{"name": "sessions_list", "args": {}}, {"name": "task_list", "args": {"action": "list_lists"}}]}, {"text": "{{last_tool_result}}"}]},
 {"turns": [{"text": "fuzz answer", "usage": {"input_tokens": 3, "output_tokens": 2}}]}
]}`

// fuzzConfig lets every tool run: a scripted model, spawns approved without
// asking, room for many children, and a second agent to spawn under and send to.
const fuzzConfig = `
[providers.script]
kind = "scripted"
script = "unused.json"
[[models]]
id = "script/m"
provider = "script"
[agents.defaults]
model = "script/m"
max_iterations = 4
[agents.defaults.subagents]
max_concurrent = 16
max_children_per_agent = 1000
max_spawn_depth = 2
run_timeout_seconds = 20
[[agents.list]]
id = "main"
[agents.list.subagents]
allow_agents = ["*"]
[[agents.list]]
id = "researcher"
[tools.sessions]
max_ping_pong_turns = 2
[approval]
spawn-subagent = "auto"
`

// fuzzServer is the real server over a temp database, shared by the inputs
// one fuzz worker runs.
type fuzzServer struct {
	srv   *Server
	st    *store.Store
	names []string // registered tools, sorted; index len(names) = raw message
	id    atomic.Int64
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	cfg, err := config.Parse([]byte(fuzzConfig), "fuzz.toml")
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	sc, err := provider.ParseScript([]byte(fuzzScript))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(tb, "fuzz.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	srv, err := Build(cfg, st, &BuildOptions{Version: "fuzz", Providers: map[string]provider.Provider{"script": provider.NewScripted("script", sc, nil)}})
	if err != nil {
		tb.Fatalf("build: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	fs := &fuzzServer{srv: srv, st: st, names: srv.reg.Names()}
	// A session of each kind for keys to land on.
	for _, s := range []store.Session{
		{Key: "agent:main:notes", Label: "notes"},
		{Key: "agent:researcher:desk", Label: "desk"},
		{Key: "agent:main:subagent:fixed", Label: "child", ParentKey: "agent:main:main", Depth: 1},
	} {
		if _, err := st.EnsureSession(ctx, s); err != nil {
			tb.Fatal(err)
		}
	}
	return fs
}

// fuzzCallBound is how long one call may take: the longest wait a tool
// honours is cut by this context, and the call must then return.
const fuzzCallBound = 10 * time.Second

// handle sends one raw JSON-RPC message and returns the encoded answer
// ("" for a notification). The call runs under a fuzzCallBound context; a
// call still running well after it is a hang of the server: the test fails
// with every goroutine's stack.
func (fs *fuzzServer) handle(t *testing.T, msg []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fuzzCallBound)
	defer cancel()
	done := make(chan string, 1)
	go func() {
		res := fs.srv.MCPServer().HandleMessage(ctx, json.RawMessage(msg))
		if res == nil {
			done <- ""
			return
		}
		b, err := json.Marshal(res)
		if err != nil {
			b = []byte(fmt.Sprintf("unencodable response %T: %v", res, err))
		}
		done <- string(b)
	}()
	hang := time.NewTimer(fuzzCallBound + 20*time.Second)
	defer hang.Stop()
	select {
	case out := <-done:
		return out
	case <-hang.C:
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("no answer %s after the call's context ended: %.500s\n%s", fuzzCallBound+20*time.Second, msg, buf)
		return ""
	}
}

// checkAlive asserts the server still answers a sessions_list call.
func (fs *fuzzServer) checkAlive(t *testing.T, after []byte) {
	t.Helper()
	id := fs.id.Add(1)
	out := fs.handle(t, []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"sessions_list","arguments":{"limit":1}}}`, id)))
	var res struct {
		ID     int64 `json:"id"`
		Result *struct {
			IsError           bool           `json:"isError"`
			StructuredContent map[string]any `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.ID != id || res.Result == nil || res.Result.IsError || res.Result.StructuredContent["sessions"] == nil {
		t.Fatalf("the server no longer answers sessions_list after %.500s:\n%.1000s", after, out)
	}
}

// panicMarks are what a recovered handler panic leaves in a result: the
// registry's recovery and mcp-go's WithRecovery.
var panicMarks = []string{"internal error in ", "panic recovered in "}

// FuzzToolCall sends arbitrary arguments to every registered tool through
// the MCP surface (JSON-RPC tools/call on the real server, with a scripted
// child model), and arbitrary whole messages (the last index): whatever comes
// in, no handler panics (recovered or not), an answer comes back within a
// bound, and the server then still answers sessions_list.
//
// toolIndex picks the tool from the sorted registered names (modulo their
// count + 1); args that are not JSON are sent as a JSON string.
// Seeds: the f.Add pairs and testdata/fuzz/FuzzToolCall/.
func FuzzToolCall(f *testing.F) {
	fs := newFuzzServer(f)
	index := func(name string) byte {
		for i, n := range fs.names {
			if n == name {
				return byte(i)
			}
		}
		f.Fatalf("no tool %s in %v", name, fs.names)
		return 0
	}
	seeds := []struct{ tool, args string }{
		{"sessions_list", `{"limit": 5, "kinds": ["main", "subagent"], "messageLimit": 2, "includeArchived": true}`},
		{"sessions_list", `{"limit": 500}`},
		{"sessions_history", `{"key": "current", "limit": 200, "includeTools": true}`},
		{"sessions_history", `{"sessionKey": "agent:main:notes", "offset": -1}`},
		{"sessions_search", `{"query": "fuzz \"answer\" OR NEAR(a b) *", "limit": 20, "exclude_current": false}`},
		{"session_status", `{"key": "agent:main:subagent:fixed"}`},
		{"agents_list", `{}`},
		{"sessions_yield", `{"result": {"x": 1}}`},
		{"sessions_spawn", `{"task": "quick job", "label": "q", "agentId": "researcher", "thinking": "low", "cleanup": "delete"}`},
		{"sessions_spawn", `{"task": "yield it", "tool_choice": {"type": "tool", "name": "nope"}, "active_tools": ["sessions_yield"]}`},
		{"spawn_agent", `{"task": "list what you see", "timeoutSeconds": 5}`},
		{"spawn_agent", `{"task": "x", "output_schema": {"type": "object", "required": ["task"]}, "delegate_only": true}`},
		{"spawn_agent", `{"task": "background", "nonblocking": true, "allow_tools": ["sessions_yield"], "deny_tools": ["*"]}`},
		{"spawn_status", `{"task_id": "nope"}`},
		{"spawn_result", `{"task_id": "", "wait_seconds": 600}`},
		{"spawn_list", `{}`},
		{"cancel_spawn", `{"task_id": "last"}`},
		{"subagents", `{"action": "list"}`},
		{"subagents", `{"action": "kill", "target": "all"}`},
		{"subagents", `{"action": "send", "target": "1", "message": "go on"}`},
		{"subagents", `{"action": "steer", "target": "agent:main:subagent:fixed", "message": "stop"}`},
		{"sessions_send", `{"key": "agent:researcher:desk", "message": "hello", "timeoutSeconds": 300}`},
		{"sessions_send", `{"key": "main", "message": "to myself", "role": "system"}`},
		{"sessions_send", `{"label": "desk", "agentId": "researcher", "message": "ping", "wait_for_reply": false, "timeoutSeconds": 0}`},
		{"task_list", `{"action": "create", "list": "l", "title": "t"}`},
		{"task_list", `{"action": "claim", "list": "l", "id": 1}`},
		{"cron", `{"action": "add", "job": {"name": "n", "schedule": "every:10s", "timezone": "Mars/Olympus", "payload": {"kind": "agentTurn", "message": "m"}}}`},
		{"cron", `{"action": "add", "job": {"name": "n", "schedule": "at:2999-01-01T00:00:00Z", "payload": {"kind": "agentTurn", "message": "m", "timeout_secs": -1}}}`},
		{"cron", `{"action": "run", "id": "x"}`},
		{"sessions_list", `null`},
		{"sessions_list", `[1, 2]`},
		{"sessions_list", `"not an object"`},
		{"spawn_agent", `{"task": `},
	}
	for _, s := range seeds {
		f.Add(index(s.tool), []byte(s.args))
	}
	raw := byte(len(fs.names))
	for _, m := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"spawn_agent","arguments":{"task":"t"},"_meta":{"progressToken":7}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nope"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"session://agent:main:notes"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"resources/list"}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{"jsonrpc":"1.0","id":5,"method":"ping"}`,
		`[{"jsonrpc":"2.0","id":6,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":{},"method":"tools/call","params":[]}`,
	} {
		f.Add(raw, []byte(m))
	}
	f.Fuzz(func(t *testing.T, toolIndex byte, args []byte) {
		slot := int(toolIndex) % (len(fs.names) + 1)
		var msg []byte
		if slot == len(fs.names) {
			msg = args
		} else {
			field := args
			if !json.Valid(args) {
				field, _ = json.Marshal(string(args))
			}
			msg = []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, fs.id.Add(1), fs.names[slot], field))
		}
		out := fs.handle(t, msg)
		for _, mark := range panicMarks {
			if strings.Contains(out, mark) {
				t.Fatalf("a handler panicked on %.500s:\n%.2000s", msg, out)
			}
		}
		fs.checkAlive(t, msg)
	})
}
