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
}

var _ spruntime.ToolBox = (*Box)(nil)

// Offer lists the tools the caller may call, with their input schemas.
func (b *Box) Offer(_ context.Context, c policy.Caller) []provider.ToolSpec {
	var out []provider.ToolSpec
	for _, t := range b.Reg.Visible(c) {
		out = append(out, provider.ToolSpec{Name: t.Name, Description: t.Description, Schema: t.InputSchema})
	}
	return out
}

// Call runs one tool call through the gate.
func (b *Box) Call(ctx context.Context, c policy.Caller, name string, args json.RawMessage) spruntime.ToolResult {
	res := b.Reg.Call(ctx, c, b.Approver, name, args, nil)
	return spruntime.ToolResult{Text: res.Text, IsError: res.IsError}
}
