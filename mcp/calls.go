package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

func mcpTool(t *tools.Tool) mcp.Tool {
	a := t.Annotations
	return mcp.Tool{
		Name:            t.Name,
		Description:     t.Description + fmt.Sprintf(" [action class: %s]", t.Class),
		RawInputSchema:  t.InputSchema,
		RawOutputSchema: t.OutputSchema,
		Annotations: mcp.ToolAnnotation{
			Title:           t.Title,
			ReadOnlyHint:    mcp.ToBoolPtr(a.ReadOnly),
			DestructiveHint: mcp.ToBoolPtr(a.Destructive),
			IdempotentHint:  mcp.ToBoolPtr(a.Idempotent),
			OpenWorldHint:   mcp.ToBoolPtr(a.OpenWorld),
		},
	}
}

// filterTools shows the MCP client only the tools the gate would let its
// principal call.
func (s *Server) filterTools(ctx context.Context, ts []mcp.Tool) []mcp.Tool {
	out := ts[:0:0]
	caller, _, err := s.callerOf(ctx)
	if err != nil {
		s.log.Error("tools/list: the connection's principal", "err", err)
		return out
	}
	for _, t := range ts {
		def, ok := s.reg.Get(t.Name)
		if ok && !def.ChildOnly && s.reg.Env().Policy.ToolDecision(caller, def.Name, def.Class).Allowed() {
			out = append(out, t)
		}
	}
	return out
}

func (s *Server) handler(name string) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (out *mcp.CallToolResult, err error) {
		s.warm.run(func() { out, err = s.call(ctx, name, req) })
		return out, err
	}
}

// warmIdle is how many idle warm goroutines the server keeps for tool
// handlers (warm.go): calls made in sequence use one; a burst of
// concurrent calls starts more, and those past warmIdle end after it.
const warmIdle = 8

// call runs one tool call of an MCP client and records it.
func (s *Server) call(ctx context.Context, name string, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	_, o, err := s.callerOf(ctx)
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	o.remember(ctx)
	o.markSeen(ctx, s.reg.Env().Store)
	raw := noArgs
	if m, ok := req.Params.Arguments.(map[string]any); !ok || len(m) > 0 {
		b, err := json.Marshal(req.Params.Arguments)
		if err == nil && req.Params.Arguments != nil {
			raw = b
		}
	}
	fold := &foldedRecord{own: o.caller.Key, name: name, args: raw}
	res := s.reg.Call(tools.WithRecorder(ctx, fold), o.caller, &elicitApprover{srv: s.srv}, name, raw, s.progress(ctx, req))
	out := toMCP(res)
	if anns, ok := fold.done(res, s.log); ok {
		prependAnnounces(out, anns)
	} else {
		s.recordAndDeliver(ctx, o.caller.Key, name, raw, res, out)
	}
	return out, nil
}

// noArgs is the arguments of a call that has none (what json.Marshal
// gives for an empty map).
var noArgs = json.RawMessage("{}")

// foldedRecord lets the tool's own write carry the call's transcript
// record (tools.Recorder): taken at most once, for this call's tool only.
type foldedRecord struct {
	own, name string
	args      json.RawMessage
	rec       *store.CallRecord
	res       tools.Result // the result the record was made for
}

// Record implements tools.Recorder.
func (f *foldedRecord) Record(tool string, res tools.Result) *store.CallRecord {
	if tool != f.name || f.rec != nil {
		return nil
	}
	f.rec = &store.CallRecord{Messages: callMessages(f.own, f.name, f.args, res), Requester: f.own}
	f.res = res
	return f.rec
}

// done reports whether the record was committed for exactly the result
// the call returned, with the announces claimed with it.
func (f *foldedRecord) done(res tools.Result, log *slog.Logger) ([]store.Announce, bool) {
	if f.rec == nil || !f.rec.Committed {
		return nil, false
	}
	if res.Text != f.res.Text || res.IsError != f.res.IsError {
		// Never expected: the call is recorded again below, as it returned.
		log.Error("a tool call's folded record differs from its result; recording it again", "tool", f.name)
		return nil, false
	}
	return f.rec.Claimed, true
}

// callMessages is a client's tool call and its result as recorded in its
// own session's transcript.
func callMessages(own, name string, args json.RawMessage, res tools.Result) []store.Message {
	callID := "mcp_" + strconv.FormatInt(time.Now().UnixNano(), 10)
	text := res.Text
	if len(text) > 4000 {
		text = text[:4000] + " …[cut]"
	}
	return []store.Message{
		{SessionKey: own, Role: store.RoleAssistant, Trust: store.TrustUser,
			Content: store.Content{ToolCalls: []store.ToolCall{{ID: callID, Name: name, Args: tools.RecordedArgs(args, res)}}}},
		{SessionKey: own, Role: store.RoleTool, Trust: store.TrustExternal,
			Content: store.Content{ToolResults: []store.ToolResult{{CallID: callID, Name: name, Content: text, IsError: res.IsError}}}},
	}
}

// prependAnnounces puts announce bodies in front of a tool result.
func prependAnnounces(out *mcp.CallToolResult, anns []store.Announce) {
	if len(anns) == 0 {
		return
	}
	var b strings.Builder
	for _, a := range anns {
		b.WriteString(a.Body)
		b.WriteString("\n\n")
	}
	b.WriteString("---\n")
	out.Content = append([]mcp.Content{mcp.NewTextContent(b.String())}, out.Content...)
}

func toMCP(res tools.Result) *mcp.CallToolResult {
	out := &mcp.CallToolResult{
		Content:           []mcp.Content{mcp.NewTextContent(res.Text)},
		StructuredContent: res.Structured,
		IsError:           res.IsError,
	}
	return out
}

// progress returns a reporter that sends notifications/progress when the
// client asked for them (a progress token), and nil otherwise.
func (s *Server) progress(ctx context.Context, req mcp.CallToolRequest) func(p, total float64, msg string) {
	if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil {
		return nil
	}
	token := req.Params.Meta.ProgressToken
	return func(p, total float64, msg string) {
		params := map[string]any{"progressToken": token, "progress": p}
		if total > 0 {
			params["total"] = total
		}
		if msg != "" {
			params["message"] = msg
		}
		if err := s.srv.SendNotificationToClient(ctx, "notifications/progress", params); err != nil {
			s.log.Debug("progress notification not sent", "err", err)
		}
	}
}

// recordTimeout bounds the wait for a call's transcript record. It is
// longer than the store's own retries last (on PostgreSQL up to 40
// conflicting attempts, ~13 s): a record that times out is lost while the
// reply still goes out, and the multi-host test saw a 5 s bound lose the
// record of an acknowledged sessions_send on a loaded machine.
const recordTimeout = 30 * time.Second

// recordAndDeliver appends the client's call and its result to its own
// session's transcript and, in the same transaction, claims every announce
// addressed to that session not yet delivered, which is put in front of this tool result: each
// reaches the client exactly once. It survives the request being
// cancelled, bounded by recordTimeout.
func (s *Server) recordAndDeliver(ctx context.Context, own, name string, args json.RawMessage, res tools.Result, out *mcp.CallToolResult) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	// A read-only call's record need not commit before the reply (the
	// durability rule in the README); a call that may have changed
	// something is recorded before its result goes out.
	def, ok := s.reg.Get(name)
	durable := !ok || !def.Annotations.ReadOnly
	anns, err := s.reg.Env().Store.RecordCall(ctx, callMessages(own, name, args, res), own, durable)
	if err != nil {
		s.log.Error("record the tool call and deliver announces", "tool", name, "err", err)
		return
	}
	prependAnnounces(out, anns)
}
