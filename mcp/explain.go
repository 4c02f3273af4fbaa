package mcp

import (
	"context"

	"github.com/sessionplane/sessionplane/tools"
)

// Explain answers policy_explain for this server's own principal (the
// agent and preset it serves the MCP client as), for the command line.
func (s *Server) Explain(ctx context.Context, in tools.ExplainIn) (tools.ExplainOut, string, error) {
	return tools.Explain(ctx, s.reg, s.Caller(), in)
}
