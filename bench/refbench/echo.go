package main

import (
	"context"
	"os"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// serveEcho is the floor of the comparison: the smallest mcp-go stdio
// server, one echo tool and nothing else (no store, no policy, no record),
// run by refbench itself with -serve-echo. What sessionplane's round trip
// costs above it is sessionplane's own work.
func serveEcho() error {
	s := mcpserver.NewMCPServer("echo-floor", "1", mcpserver.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("Echoes the message back."),
		mcp.WithString("message", mcp.Required())),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("Echo: " + req.GetString("message", "")), nil
		})
	return mcpserver.NewStdioServer(s).Listen(context.Background(), os.Stdin, os.Stdout)
}
