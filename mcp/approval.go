package mcp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sessionplane/sessionplane/tools"
)

// elicitApprover asks the human through MCP elicitation.
type elicitApprover struct{ srv *server.MCPServer }

func (a *elicitApprover) Approve(ctx context.Context, r tools.ApprovalRequest) (bool, error) {
	sess := server.ClientSessionFromContext(ctx)
	if sess == nil {
		return false, tools.ErrCannotAsk
	}
	if ci, ok := sess.(server.SessionWithClientInfo); ok && ci.GetClientCapabilities().Elicitation == nil {
		return false, tools.ErrCannotAsk
	}
	msg := fmt.Sprintf("Allow %s (%s) for %s?", r.Tool, r.Class, r.Caller)
	if len(r.Targets) > 0 {
		msg += "\nTarget session: " + strings.Join(r.Targets, ", ")
	}
	if r.Summary != "" {
		msg += "\nTask: " + r.Summary
	}
	res, err := a.srv.RequestElicitation(ctx, mcp.ElicitationRequest{Params: mcp.ElicitationParams{
		Message: msg,
		RequestedSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"approve": map[string]any{"type": "boolean", "title": "Approve", "description": "Allow this call"},
			},
			"required": []string{"approve"},
		},
	}})
	if err != nil {
		// In the 2026-07-28 era mcp-go cannot send server-initiated requests
		// over stdio/HTTP (that era asks through multi round-trip requests):
		// there is nobody we can ask, so the configured fallback applies.
		if errors.Is(err, server.ErrElicitationNotSupported) || errors.Is(err, server.ErrNoActiveSession) ||
			errors.Is(err, server.ErrServerInitiatedRequestUnsupported) {
			return false, tools.ErrCannotAsk
		}
		return false, err
	}
	if res.Action != mcp.ElicitationResponseActionAccept {
		return false, nil
	}
	if m, ok := res.Content.(map[string]any); ok {
		if v, ok := m["approve"].(bool); ok {
			return v, nil
		}
	}
	return false, nil
}
