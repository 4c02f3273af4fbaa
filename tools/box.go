package tools

import (
	"context"
	"encoding/json"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
	"github.com/sessionplane/sessionplane/runtime/provider"
)

// Box is the tool set as the runtime sees it (runtime.ToolBox): the same
// registry, the same gate, for child agents.
type Box struct {
	Reg *Registry
	// Approver asks a human for calls that need approval (nil = nobody can
	// be asked: "auto" proceeds with a note, "elicit" refuses).
	Approver Approver
	// Down offers the tools of [[mcp_servers]] (nil = none).
	Down Downstream
}

var _ spruntime.ToolBox = (*Box)(nil)

// Offer lists the tools the caller may call, with their input schemas:
// the registry's and those of the downstream MCP servers.
func (b *Box) Offer(ctx context.Context, c policy.Caller) []provider.ToolSpec {
	var out []provider.ToolSpec
	for _, t := range b.Reg.Visible(c) {
		out = append(out, provider.ToolSpec{Name: t.Name, Description: t.Description, Schema: t.InputSchema})
	}
	return append(out, b.offerDownstream(ctx, c)...)
}

// Call runs one tool call through the gate.
func (b *Box) Call(ctx context.Context, c policy.Caller, name string, args json.RawMessage) spruntime.ToolResult {
	if _, ok := b.Reg.Get(name); !ok {
		if res, ok := b.callDownstream(ctx, c, name, args); ok {
			return res
		}
	}
	res := b.Reg.Call(ctx, c, b.Approver, name, args, nil)
	return spruntime.ToolResult{Text: res.Text, IsError: res.IsError, Park: res.Park}
}
