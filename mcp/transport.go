package mcp

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/mark3labs/mcp-go/server"
)

// ServeStdio serves MCP on in/out until ctx ends or in reaches EOF.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer, workers int) error {
	stdio := server.NewStdioServer(s.srv)
	server.WithWorkerPoolSize(workers)(stdio)
	server.WithQueueSize(workers * 4)(stdio)
	stdio.SetErrorLogger(slog.NewLogLogger(s.log.Handler(), slog.LevelWarn))
	err := stdio.Listen(ctx, in, out)
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, io.EOF)) {
		return nil
	}
	return err
}
