package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

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

// ServeHTTP serves MCP as Streamable HTTP on addr (loopback only) at /mcp
// until ctx ends. ready, when non-nil, receives the bound address.
func (s *Server) ServeHTTP(ctx context.Context, addr string, ready func(net.Addr)) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: %v (use host:port, e.g. 127.0.0.1:8765)", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--http %q: only loopback addresses are served (127.0.0.1, [::1] or localhost)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http %s: %w", addr, err)
	}
	httpSrv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	h := server.NewStreamableHTTPServer(s.srv, server.WithStreamableHTTPServer(httpSrv), server.WithStreamableHTTPLogger(s.log))
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	httpSrv.Handler = mux
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(sctx)
		_ = httpSrv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
