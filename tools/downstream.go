package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
	"github.com/sessionplane/sessionplane/runtime/downstream"
	"github.com/sessionplane/sessionplane/runtime/provider"
)

// Downstream is the tool set of the configured [[mcp_servers]], offered to
// child agents as <server>__<tool> (implemented by downstream.Manager).
type Downstream interface {
	Tools(ctx context.Context) ([]downstream.Tool, error)
	Call(ctx context.Context, qualified string, args json.RawMessage) (text string, isError bool, err error)
}

func downstreamClass(t downstream.Tool) policy.Class {
	if t.ReadOnly {
		return policy.ClassRead
	}
	return policy.ClassMutate
}

// offerDownstream lists the downstream tools the gate lets caller call.
// A server that cannot start is skipped (logged); the others are offered.
func (b *Box) offerDownstream(ctx context.Context, c policy.Caller) []provider.ToolSpec {
	if b.Down == nil {
		return nil
	}
	ts, err := b.Down.Tools(ctx)
	if err != nil {
		b.Reg.env.Log.Warn("downstream MCP servers: some tools are unavailable", "err", err)
	}
	var out []provider.ToolSpec
	for _, t := range ts {
		if !b.Reg.env.Policy.ToolDecision(c, t.Qualified, downstreamClass(t)).Allowed() {
			continue
		}
		desc := t.Description
		if desc == "" {
			desc = "Tool " + t.Name + " of the MCP server " + t.Server + "."
		}
		out = append(out, provider.ToolSpec{Name: t.Qualified, Description: desc + " (from MCP server " + t.Server + ")", Schema: t.InputSchema})
	}
	return out
}

// callDownstream runs a downstream tool through the gate. A server that
// crashed or is slow gives the model a tool error, never a hung run.
func (b *Box) callDownstream(ctx context.Context, c policy.Caller, name string, args json.RawMessage) (spruntime.ToolResult, bool) {
	if b.Down == nil || !strings.Contains(name, downstream.Separator) {
		return spruntime.ToolResult{}, false
	}
	ts, _ := b.Down.Tools(ctx)
	var tool *downstream.Tool
	for i := range ts {
		if ts[i].Qualified == name {
			tool = &ts[i]
		}
	}
	if tool == nil {
		return spruntime.ToolResult{IsError: true, Text: fmt.Sprintf("error: unknown tool %q: no configured MCP server offers it", name)}, true
	}
	class := downstreamClass(*tool)
	d := b.Reg.env.Policy.Decide(ctx, c, tool.Qualified, class, policy.Targets{})
	switch d.Effect {
	case policy.Deny:
		res := refusal(tool.Qualified, d)
		return spruntime.ToolResult{Text: res.Text, IsError: true}, true
	case policy.Ask:
		call := &Call{Caller: c, Env: b.Reg.env, reg: b.Reg}
		if res, ok := b.Reg.ask(ctx, c, b.Approver, &Tool{Name: tool.Qualified, Class: class}, d, policy.Targets{}, string(args), call); !ok {
			return spruntime.ToolResult{Text: res.Text, IsError: true}, true
		}
	}
	text, isErr, err := b.Down.Call(ctx, tool.Qualified, args)
	if err != nil {
		return spruntime.ToolResult{IsError: true, Text: "error: " + err.Error()}, true
	}
	return spruntime.ToolResult{Text: text, IsError: isErr}, true
}
