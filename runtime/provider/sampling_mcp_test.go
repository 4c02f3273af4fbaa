package provider

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// sessionSampler is what the MCP layer is expected to pass in
// Options.Sampler: the server's RequestSampling on the calling session,
// with SupportsTools read from the capabilities the client declared.
type sessionSampler struct {
	srv *server.MCPServer
}

func (s sessionSampler) RequestSampling(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return s.srv.RequestSampling(ctx, req)
}

func (s sessionSampler) SupportsTools(ctx context.Context) bool {
	sess, ok := server.ClientSessionFromContext(ctx).(server.SessionWithClientInfo)
	if !ok {
		return true // in-process sessions do not record capabilities
	}
	c := sess.GetClientCapabilities().Sampling
	return c != nil && c.Tools != nil
}

// newAskServer serves one tool, "ask", that runs a sampling provider call
// with the weather conversation and returns the Response as JSON.
func newAskServer(t *testing.T) *server.MCPServer {
	t.Helper()
	srv := server.NewMCPServer("sessionplane-test", "0.0.1")
	srv.EnableSampling()
	p, err := New("client", Config{Kind: KindSampling}, &Options{Sampler: sessionSampler{srv}})
	if err != nil {
		t.Fatal(err)
	}
	srv.AddTool(mcp.NewTool("ask", mcp.WithDescription("run one sampling call")), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		req := secondTurn("claude-sonnet-4-5", "toolu_1")
		req.ToolChoice = ToolChoice{Mode: "any"}
		resp, err := p.Complete(ctx, req)
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		b, _ := json.Marshal(resp)
		return mcp.NewToolResultText(string(b)), nil
	})
	return srv
}

// clientModel is the sampling handler of the MCP client: it keeps the
// request it got as JSON and answers with a tool call.
type clientModel struct {
	mu   sync.Mutex
	reqs [][]byte
}

func (c *clientModel) CreateMessage(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	b, err := json.Marshal(req.CreateMessageParams)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, b)
	c.mu.Unlock()
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: []mcp.Content{
			mcp.NewTextContent("Checking tomorrow too."),
			mcp.ToolUseContent{Type: mcp.ContentTypeToolUse, ID: "toolu_client_1", Name: "get_weather", Input: map[string]any{"city": "Paris", "day": "tomorrow"}},
		}},
		Model:      "claude-client-model",
		StopReason: "toolUse",
	}, nil
}

func (c *clientModel) last(t *testing.T) map[string]any {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) == 0 {
		t.Fatal("the client got no sampling request")
	}
	var v map[string]any
	if err := json.Unmarshal(c.reqs[len(c.reqs)-1], &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// callAsk calls the ask tool and decodes the Response it returns.
func callAsk(t *testing.T, c *client.Client) Response {
	t.Helper()
	res, err := c.CallTool(t.Context(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "ask"}})
	if err != nil {
		t.Fatal(err)
	}
	text := res.Content[0].(mcp.TextContent).Text
	if res.IsError {
		t.Fatalf("ask failed: %s", text)
	}
	var resp Response
	if err := json.Unmarshal([]byte(text), &resp); err != nil {
		t.Fatalf("ask result %q: %v", text, err)
	}
	return resp
}

func checkAskResponse(t *testing.T, resp Response) {
	t.Helper()
	if resp.Text != "Checking tomorrow too." || resp.Model != "claude-client-model" || resp.StopReason != "toolUse" {
		t.Errorf("response = %+v", resp)
	}
	if len(resp.ToolCalls) != 1 || resp.ToolCalls[0].ID != "toolu_client_1" || !jsonEqual(t, resp.ToolCalls[0].Args, []byte(`{"city":"Paris","day":"tomorrow"}`)) {
		t.Errorf("tool calls = %+v", resp.ToolCalls)
	}
}

func checkSamplingParams(t *testing.T, params map[string]any) {
	t.Helper()
	checks := []struct {
		path []any
		want string
	}{
		{[]any{"systemPrompt"}, `"You are a helpful assistant."`},
		{[]any{"maxTokens"}, `1024`},
		{[]any{"modelPreferences", "hints", 0, "name"}, `"claude-sonnet-4-5"`},
		{[]any{"toolChoice", "mode"}, `"required"`},
		{[]any{"tools", 0, "name"}, `"get_weather"`},
		{[]any{"tools", 0, "inputSchema", "required"}, `["city"]`},
		{[]any{"messages", 1, "content", 1, "type"}, `"tool_use"`},
		{[]any{"messages", 1, "content", 1, "input"}, `{"city":"Paris","unit":"celsius"}`},
		{[]any{"messages", 2, "role"}, `"user"`},
		{[]any{"messages", 2, "content", 0, "type"}, `"tool_result"`},
		{[]any{"messages", 2, "content", 0, "toolUseId"}, `"toolu_1"`},
		{[]any{"messages", 2, "content", 0, "content", 0, "text"}, `"18°C, light rain"`},
	}
	for _, c := range checks {
		if got := asJSON(field(params, c.path...)); got != c.want {
			t.Errorf("params %v = %s, want %s", c.path, got, c.want)
		}
	}
}

// TestSamplingThroughInProcessClient runs the provider inside a tool
// handler of a real mcp-go server, answered by an in-process client.
func TestSamplingThroughInProcessClient(t *testing.T) {
	model := &clientModel{}
	c, err := client.NewInProcessClientWithSamplingHandler(newAskServer(t), model)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "test-client", Version: "1.0.0"}
	init.Params.Capabilities = mcp.ClientCapabilities{Sampling: &mcp.SamplingCapability{Tools: &struct{}{}}}
	if _, err := c.Initialize(t.Context(), init); err != nil {
		t.Fatal(err)
	}
	checkAskResponse(t, callAsk(t, c))
	checkSamplingParams(t, model.last(t))
}

// TestSamplingInProcessClientWithoutTools: a client that declares plain
// sampling (no sampling.tools) gets neither tools nor tool blocks.
func TestSamplingInProcessClientWithoutTools(t *testing.T) {
	model := &clientModel{}
	c, err := client.NewInProcessClientWithSamplingHandler(newAskServer(t), model)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "test-client", Version: "1.0.0"}
	if _, err := c.Initialize(t.Context(), init); err != nil {
		t.Fatal(err)
	}
	callAsk(t, c)
	params := model.last(t)
	if params["tools"] != nil || params["toolChoice"] != nil {
		t.Errorf("tools sent to a client without sampling.tools: %s", asJSON(params))
	}
	if got := asJSON(field(params, "messages", 2, "content", "text")); !strings.Contains(got, "[tool get_weather result]") {
		t.Errorf("tool result not sent as text: %s", got)
	}
}

// TestSamplingOverStdioWire does the same over mcp-go's stdio transport on
// pipes, so the request crosses the real JSON-RPC wire; the test reads the
// sampling/createMessage line as the client received it.
func TestSamplingOverStdioWire(t *testing.T) {
	srv := newAskServer(t)
	clientIn, serverOut := io.Pipe()
	serverIn, clientOut := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.NewStdioServer(srv).Listen(ctx, serverIn, serverOut)
	}()
	t.Cleanup(func() {
		cancel()
		_ = clientOut.Close()
		_ = serverOut.Close()
		<-served
	})

	var wireMu sync.Mutex
	var wire bytes.Buffer
	tap := io.TeeReader(clientIn, writerFunc(func(p []byte) (int, error) {
		wireMu.Lock()
		defer wireMu.Unlock()
		return wire.Write(p)
	}))
	model := &clientModel{}
	c := client.NewClient(transport.NewIO(tap, clientOut, io.NopCloser(strings.NewReader(""))),
		client.WithSamplingHandler(model),
		client.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION), // server-initiated requests predate 2026-07-28
		client.WithClientCapabilities(mcp.ClientCapabilities{Sampling: &mcp.SamplingCapability{Tools: &struct{}{}}}),
	)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "test-client", Version: "1.0.0"}
	init.Params.Capabilities = mcp.ClientCapabilities{Sampling: &mcp.SamplingCapability{Tools: &struct{}{}}}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	checkAskResponse(t, callAsk(t, c))
	checkSamplingParams(t, model.last(t))

	// The bytes on the wire: one JSON-RPC request of method sampling/createMessage.
	wireMu.Lock()
	lines := wire.String()
	wireMu.Unlock()
	var found bool
	sc := bufio.NewScanner(strings.NewReader(lines))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var msg struct {
			Method string         `json:"method"`
			Params map[string]any `json:"params"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) != nil || msg.Method != "sampling/createMessage" {
			continue
		}
		found = true
		checkSamplingParams(t, msg.Params)
	}
	if !found {
		t.Fatalf("no sampling/createMessage on the wire:\n%s", lines)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
