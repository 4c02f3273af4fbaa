package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

type fixture struct {
	t     *testing.T
	st    *store.Store
	srv   *Server
	c     *client.Client
	agent string
}

// newFixture builds the real server over a temp database with the given
// TOML config, connected to an in-process mcp-go client.
func newFixture(t *testing.T, toml string, opts ...client.ClientOption) *fixture {
	t.Helper()
	return newFixtureVersion(t, toml, "2025-11-25", opts...)
}

// newFixtureVersion is newFixture asking for a protocol version ("" = the
// client's preference).
func newFixtureVersion(t *testing.T, toml, version string, opts ...client.ClientOption) *fixture {
	t.Helper()
	return newFixtureFull(t, toml, version, nil, opts...)
}

// newFixtureFull is newFixture with provider instances replaced by name.
func newFixtureFull(t *testing.T, toml, version string, testProviders map[string]provider.Provider, opts ...client.ClientOption) *fixture {
	t.Helper()
	return newFixtureAt(t, testdb.DSN(t, "sp.db"), toml, version, testProviders, opts...)
}

// newFixtureAt is newFixtureFull on the database at path: two fixtures on
// one path are two server processes (and principals) sharing a database.
func newFixtureAt(t *testing.T, path, toml, version string, testProviders map[string]provider.Provider, opts ...client.ClientOption) *fixture {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := Build(cfg, st, &BuildOptions{Version: "test", Providers: testProviders})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := client.NewInProcessClientWithOptions(srv.MCPServer(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = version
	init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return &fixture{t: t, st: st, srv: srv, c: c, agent: cfg.MCP.Agent}
}

func (f *fixture) session(key, label string, parent string, depth int) {
	f.t.Helper()
	if _, err := f.st.EnsureSession(context.Background(), store.Session{Key: key, Label: label, ParentKey: parent, Depth: depth}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) messages(key string, texts ...string) {
	f.t.Helper()
	var msgs []store.Message
	for i, text := range texts {
		role := store.RoleUser
		trust := store.TrustUser
		if i%2 == 1 {
			role, trust = store.RoleAssistant, store.TrustModel
		}
		msgs = append(msgs, store.Message{SessionKey: key, Role: role, Trust: trust, Content: store.Content{Text: text}})
	}
	if err := f.st.AppendMessages(context.Background(), msgs); err != nil {
		f.t.Fatal(err)
	}
}

// call runs a tool and decodes its structured content into out (when non-nil).
func (f *fixture) call(name string, args map[string]any, out any) *mcp.CallToolResult {
	f.t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := f.c.CallTool(context.Background(), req)
	if err != nil {
		f.t.Fatalf("%s: protocol error %v", name, err)
	}
	if out != nil && res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, out); err != nil {
			f.t.Fatalf("%s: decode %s: %v", name, b, err)
		}
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func (f *fixture) wantError(res *mcp.CallToolResult, substrings ...string) {
	f.t.Helper()
	if !res.IsError {
		f.t.Fatalf("want isError, got %s", text(res))
	}
	for _, s := range substrings {
		if !strings.Contains(text(res), s) {
			f.t.Fatalf("error %q does not mention %q", text(res), s)
		}
	}
}

func TestToolsListedWithSchemasAndAnnotations(t *testing.T) {
	f := newFixture(t, "")
	res, err := f.c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	readOnly := map[string]bool{"sessions_list": true, "sessions_history": true, "sessions_search": true, "session_status": true, "agents_list": true,
		"spawn_status": true, "spawn_result": true, "spawn_list": true}
	others := map[string]bool{"sessions_spawn": true, "spawn_agent": true, "cancel_spawn": true, "subagents": true,
		"sessions_send": true, "task_list": true, "cron": true, "sessions_fork": true, "approvals": true}
	readOnly["policy_explain"], readOnly["spawn_wait"] = true, true
	if len(res.Tools) != len(readOnly)+len(others) {
		t.Fatalf("got %d tools", len(res.Tools))
	}
	for _, tool := range res.Tools {
		if !readOnly[tool.Name] && !others[tool.Name] {
			t.Errorf("unexpected tool %s (sessions_yield is for children only)", tool.Name)
		}
		a := tool.Annotations
		if a.ReadOnlyHint == nil || a.DestructiveHint == nil || a.IdempotentHint == nil || a.OpenWorldHint == nil {
			t.Errorf("%s: annotations not all set explicitly: %+v", tool.Name, a)
			continue
		}
		if readOnly[tool.Name] && (!*a.ReadOnlyHint || *a.DestructiveHint || *a.OpenWorldHint) {
			t.Errorf("%s annotations %+v", tool.Name, a)
		}
		if tool.Description == "" || len(tool.RawInputSchema) == 0 && tool.InputSchema.Type == "" {
			t.Errorf("%s: missing description or input schema", tool.Name)
		}
		if tool.OutputSchema.Type != "object" && len(tool.RawOutputSchema) == 0 {
			t.Errorf("%s: no output schema", tool.Name)
		}
	}
}

func TestSessionsList(t *testing.T) {
	f := newFixture(t, "")
	for i := 0; i < 25; i++ {
		f.session(fmt.Sprintf("agent:main:proj-%02d", i), fmt.Sprintf("project %d", i), "", 0)
	}
	f.session("agent:main:subagent:abc", "helper", "agent:main:main", 1)
	f.messages("agent:main:subagent:abc", "one", "two", "three")
	var out struct {
		Count    int  `json:"count"`
		HasMore  bool `json:"hasMore"`
		Sessions []struct {
			Key          string `json:"key"`
			Kind         string `json:"kind"`
			MessageCount int    `json:"messageCount"`
			Messages     []struct {
				Content string `json:"content"`
			} `json:"messages"`
			TranscriptURI string `json:"transcriptUri"`
		} `json:"sessions"`
	}
	f.call("sessions_list", nil, &out)
	if out.Count != 20 || !out.HasMore {
		t.Fatalf("default limit: count %d hasMore %v", out.Count, out.HasMore)
	}
	f.call("sessions_list", map[string]any{"limit": 100}, &out)
	if out.Count != 27 || out.HasMore { // 25 + subagent + the client's own main session
		t.Fatalf("limit 100: count %d", out.Count)
	}
	f.wantError(f.call("sessions_list", map[string]any{"limit": 101}, nil), "limit", "100")
	f.wantError(f.call("sessions_list", map[string]any{"messageLimit": 21}, nil), "messageLimit")
	f.wantError(f.call("sessions_list", map[string]any{"kinds": []string{"robot"}}, nil), "kinds", "robot")
	f.call("sessions_list", map[string]any{"kinds": []string{"subagent"}, "messageLimit": 2}, &out)
	if out.Count != 1 || out.Sessions[0].Kind != "subagent" || len(out.Sessions[0].Messages) != 2 || out.Sessions[0].Messages[1].Content != "three" {
		t.Fatalf("kinds+messageLimit: %+v", out)
	}
	if out.Sessions[0].TranscriptURI != "session://agent:main:subagent:abc" {
		t.Fatalf("transcriptUri %q", out.Sessions[0].TranscriptURI)
	}
	f.call("sessions_list", map[string]any{"filter": "PROJECT 1"}, &out)
	if out.Count != 11 { // project 1, 10..19
		t.Fatalf("filter: %d", out.Count)
	}
	f.st.Archive(context.Background(), "agent:main:subagent:abc")
	f.call("sessions_list", map[string]any{"kinds": []string{"subagent"}}, &out)
	if out.Count != 0 {
		t.Fatalf("archived listed: %d", out.Count)
	}
	f.call("sessions_list", map[string]any{"kinds": []string{"subagent"}, "includeArchived": true}, &out)
	if out.Count != 1 {
		t.Fatalf("includeArchived: %d", out.Count)
	}
}

func TestSessionsHistory(t *testing.T) {
	f := newFixture(t, "")
	f.session("agent:main:work", "work", "", 0)
	var texts []string
	for i := 1; i <= 30; i++ {
		texts = append(texts, fmt.Sprintf("message %d", i))
	}
	f.messages("agent:main:work", texts...)
	type hist struct {
		Key      string `json:"key"`
		Messages []struct {
			Seq     int64  `json:"seq"`
			Role    string `json:"role"`
			Content string `json:"content"`
			Trust   string `json:"trust"`
		} `json:"messages"`
		TotalMessages    int  `json:"totalMessages"`
		HasMore          bool `json:"hasMore"`
		Truncated        bool `json:"truncated"`
		ContentTruncated bool `json:"contentTruncated"`
	}
	var out hist
	f.call("sessions_history", map[string]any{"key": "agent:main:work"}, &out)
	if len(out.Messages) != 20 || out.TotalMessages != 30 || !out.HasMore || out.Messages[0].Seq != 11 || out.Messages[19].Seq != 30 {
		t.Fatalf("default page: %d msgs, total %d, first %d", len(out.Messages), out.TotalMessages, out.Messages[0].Seq)
	}
	if out.Messages[0].Trust == "" || out.Messages[0].Role == "" {
		t.Fatalf("trust/role missing: %+v", out.Messages[0])
	}
	f.call("sessions_history", map[string]any{"sessionKey": "agent:main:work", "limit": 5, "offset": 25}, &out)
	if len(out.Messages) != 5 || out.Messages[0].Seq != 1 || out.HasMore {
		t.Fatalf("alias+offset: %+v", out)
	}
	sess, _ := f.st.GetSession(context.Background(), "agent:main:work")
	f.call("sessions_history", map[string]any{"sessionId": sess.ID, "limit": 1}, &out)
	if out.Key != "agent:main:work" {
		t.Fatalf("sessionId alias: %+v", out)
	}
	f.call("sessions_history", map[string]any{"key": "current"}, &out)
	if out.Key != "agent:main:main" {
		t.Fatalf("current alias: %q", out.Key)
	}
	f.call("sessions_history", map[string]any{"key": "main"}, &out)
	if out.Key != "agent:main:main" {
		t.Fatalf("main alias: %q", out.Key)
	}
	f.wantError(f.call("sessions_history", map[string]any{"key": "agent:main:nope"}, nil), "agent:main:nope", "not found")
	// No key defaults to your own session, as session_status does.
	out.Key = ""
	if res := f.call("sessions_history", map[string]any{}, &out); res.IsError || out.Key != "agent:main:main" {
		t.Fatalf("sessions_history {}: key %q, %s", out.Key, text(res))
	}
	f.wantError(f.call("sessions_history", map[string]any{"key": "agent:main:work", "limit": 201}, nil), "limit", "200")
	f.wantError(f.call("sessions_history", map[string]any{"key": "agent:main:work", "bogus": true}, nil), "bogus")
	f.wantError(f.call("sessions_history", map[string]any{"key": 7}, nil), "key", "string")

	// Caps: a 10,000-character message is cut to 4000; 40 messages of 3,900
	// characters exceed 80 KB, so older ones are dropped and flagged.
	f.session("agent:main:big", "", "", 0)
	f.messages("agent:main:big", strings.Repeat("x", 10000))
	f.call("sessions_history", map[string]any{"key": "agent:main:big"}, &out)
	if !out.ContentTruncated || out.Truncated || len([]rune(out.Messages[0].Content)) > 4100 {
		t.Fatalf("text cap: contentTruncated %v len %d", out.ContentTruncated, len(out.Messages[0].Content))
	}
	var many []string
	for i := 0; i < 40; i++ {
		many = append(many, strings.Repeat("y", 3900))
	}
	f.messages("agent:main:big", many...)
	res := f.call("sessions_history", map[string]any{"key": "agent:main:big", "limit": 41}, &out)
	b, _ := json.Marshal(res.StructuredContent)
	if !out.Truncated || !out.HasMore || len(b) > 80*1024 || out.Messages[len(out.Messages)-1].Seq != 41 {
		t.Fatalf("80 KB cap: truncated %v hasMore %v size %d last %d", out.Truncated, out.HasMore, len(b), out.Messages[len(out.Messages)-1].Seq)
	}
	if !strings.Contains(text(res), "UNTRUSTED DATA from session://agent:main:big") {
		t.Fatalf("history text not fenced: %.200s", text(res))
	}
}

func TestHistoryIncludeToolsAndClientTranscript(t *testing.T) {
	f := newFixture(t, "")
	f.call("sessions_list", nil, nil)
	var out struct {
		Messages []struct {
			Role      string `json:"role"`
			ToolCalls []struct {
				Name string `json:"name"`
			} `json:"toolCalls"`
			ToolResults []struct {
				Name string `json:"name"`
			} `json:"toolResults"`
		} `json:"messages"`
		TotalMessages int `json:"totalMessages"`
	}
	f.call("sessions_history", map[string]any{"key": "current"}, &out)
	if out.TotalMessages != 0 {
		t.Fatalf("tool messages counted without includeTools: %d", out.TotalMessages)
	}
	f.call("sessions_history", map[string]any{"key": "current", "includeTools": true}, &out)
	// sessions_list call+result, then the first sessions_history call+result.
	if len(out.Messages) != 4 || out.Messages[0].ToolCalls[0].Name != "sessions_list" || out.Messages[1].ToolResults[0].Name != "sessions_list" {
		t.Fatalf("client transcript: %+v", out)
	}
}

func TestSessionsSearch(t *testing.T) {
	f := newFixture(t, "")
	f.session("agent:main:a", "alpha", "", 0)
	f.session("agent:main:b", "beta", "", 0)
	f.messages("agent:main:a", "the deploy went fine", "rollback plan for the deploy")
	f.messages("agent:main:b", "deploy deploy deploy rollback")
	f.messages("agent:main:main", "my own deploy note")
	var out struct {
		Count int `json:"count"`
		Hits  []struct {
			Key     string  `json:"key"`
			Label   string  `json:"label"`
			Snippet string  `json:"snippet"`
			Seq     int64   `json:"seq"`
			Score   float64 `json:"score"`
		} `json:"hits"`
	}
	f.call("sessions_search", map[string]any{"query": "deploy"}, &out)
	if out.Count != 3 || out.Hits[0].Key != "agent:main:b" || !strings.Contains(out.Hits[0].Snippet, "[deploy]") {
		t.Fatalf("search: %+v", out)
	}
	for _, h := range out.Hits {
		if h.Key == "agent:main:main" {
			t.Fatal("current session not excluded by default")
		}
	}
	f.call("sessions_search", map[string]any{"query": "deploy", "exclude_current": false}, &out)
	if out.Count != 4 {
		t.Fatalf("exclude_current=false: %d", out.Count)
	}
	f.call("sessions_search", map[string]any{"query": "deploy", "limit": 1}, &out)
	if out.Count != 1 {
		t.Fatalf("limit: %d", out.Count)
	}
	f.wantError(f.call("sessions_search", map[string]any{"query": "x", "limit": 21}, nil), "limit")
	f.wantError(f.call("sessions_search", map[string]any{"query": "   "}, nil), "query is empty")
	f.wantError(f.call("sessions_search", map[string]any{}, nil), "query")
}

func TestSessionStatusAndAgentsList(t *testing.T) {
	f := newFixture(t, `
[agents.defaults.subagents]
max_spawn_depth = 2
[[agents.list]]
id = "main"
name = "Personal Assistant"
[agents.list.subagents]
allow_agents = ["researcher"]
[[agents.list]]
id = "researcher"
name = "Researcher"
`)
	f.call("sessions_list", nil, nil) // first contact creates agent:main:main
	f.session("agent:main:subagent:1", "kid", "agent:main:main", 1)
	f.session("agent:main:subagent:1:subagent:2", "grandkid", "agent:main:subagent:1", 2)
	var st struct {
		Key       string   `json:"key"`
		Role      string   `json:"role"`
		Depth     int      `json:"depth"`
		Children  []string `json:"children"`
		RiskLevel string   `json:"riskLevel"`
	}
	f.call("session_status", nil, &st)
	if st.Key != "agent:main:main" || st.Role != "main" || len(st.Children) != 1 {
		t.Fatalf("status current: %+v", st)
	}
	f.call("session_status", map[string]any{"key": "agent:main:subagent:1"}, &st)
	if st.Role != "orchestrator" || st.Depth != 1 {
		t.Fatalf("orchestrator: %+v", st)
	}
	f.call("session_status", map[string]any{"key": "agent:main:subagent:1:subagent:2"}, &st)
	if st.Role != "leaf" || st.RiskLevel != "low" {
		t.Fatalf("leaf: %+v", st)
	}
	f.wantError(f.call("session_status", map[string]any{"key": "agent:main:ghost"}, nil), "agent:main:ghost", "not found")
	var ag struct {
		Requester string `json:"requester"`
		AllowAny  bool   `json:"allowAny"`
		Agents    []struct {
			ID         string `json:"id"`
			Name       string `json:"name"`
			Configured bool   `json:"configured"`
		} `json:"agents"`
	}
	f.call("agents_list", nil, &ag)
	if ag.Requester != "main" || ag.AllowAny || len(ag.Agents) != 2 || ag.Agents[0].ID != "main" || ag.Agents[1].ID != "researcher" || !ag.Agents[1].Configured {
		t.Fatalf("agents_list: %+v", ag)
	}
}

func TestResources(t *testing.T) {
	f := newFixture(t, "")
	f.session("agent:main:notes", "notes", "", 0)
	f.messages("agent:main:notes", "hello", "world")
	ctx := context.Background()
	list, err := f.c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range list.Resources {
		found = found || r.URI == "session://agent:main:notes"
	}
	if !found {
		t.Fatalf("session not listed as a resource: %+v", list.Resources)
	}
	tpl, err := f.c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
	if err != nil || len(tpl.ResourceTemplates) != 2 { // session://{+key} and run://{id}
		t.Fatalf("templates: %v %+v", err, tpl)
	}
	req := mcp.ReadResourceRequest{}
	req.Params.URI = "session://agent:main:notes"
	res, err := f.c.ReadResource(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var body SessionResource
	if err := json.Unmarshal([]byte(res.Contents[0].(mcp.TextResourceContents).Text), &body); err != nil {
		t.Fatal(err)
	}
	if body.Session.Key != "agent:main:notes" || len(body.Messages) != 2 || body.Messages[1].Content != "world" {
		t.Fatalf("resource body: %+v", body)
	}
	req.Params.URI = "session://agent:main:missing"
	if _, err := f.c.ReadResource(ctx, req); err == nil || !strings.Contains(err.Error(), "agent:main:missing") {
		t.Fatalf("missing resource: %v", err)
	}
}

// Both protocol eras: a client pinned to 2025-11-25 and one that prefers
// the newest (2026-07-28) both list and call tools.
func TestProtocolEras(t *testing.T) {
	for _, v := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(v, func(t *testing.T) {
			f := newFixtureVersion(t, "", "", client.WithProtocolVersion(v))
			if got := f.c.ProtocolVersion(); got != v {
				t.Fatalf("negotiated %q, want %q", got, v)
			}
			res, err := f.c.ListTools(context.Background(), mcp.ListToolsRequest{})
			if err != nil || len(res.Tools) != 19 {
				t.Fatalf("list: %v (%d tools)", err, len(res.Tools))
			}
			var out struct {
				Count int `json:"count"`
			}
			if r := f.call("sessions_list", nil, &out); r.IsError || out.Count != 1 {
				t.Fatalf("call: %s", text(r))
			}
		})
	}
}
