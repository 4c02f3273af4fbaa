package downstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// Backoff for a server that keeps failing to start.
const (
	maxFailedStarts = 3                // failed starts within failureWindow that trigger a pause
	failureWindow   = time.Minute      // how far back failed starts count
	backoffPause    = 30 * time.Second // how long starts are refused after that
)

// server is one configured downstream server: its running connection, its cached tool
// list, and its start history.
type server struct {
	m   *Manager
	cfg config.MCPServer
	log *slog.Logger

	mu       sync.Mutex
	conn     *conn       // the running process, nil when none
	op       *readyOp    // the start/list in flight, shared by every caller waiting for it
	tools    []Tool      // cached after the first successful listing; nil before
	failures []time.Time // failed starts within failureWindow, oldest first
	lastErr  error       // the last failed start
}

// readyOp is one run of start-if-needed and list-if-needed. Callers wait on done.
type readyOp struct {
	done  chan struct{}
	tools []Tool
	conn  *conn
	err   error
}

// ready returns the server's tools, and when needConn is set a live connection, starting
// the process and listing its tools as needed. A start or listing in flight is shared, and
// runs on a goroutine of the Manager (bounded by the start and list timeouts), so a caller
// whose ctx ends stops waiting without aborting it for the others.
func (s *server) ready(ctx context.Context, needConn bool) ([]Tool, *conn, error) {
	s.mu.Lock()
	if s.tools != nil && (!needConn || s.conn.alive()) {
		tools, c := s.tools, s.conn
		s.mu.Unlock()
		return tools, c, nil
	}
	op := s.op
	if op == nil {
		if err := s.backoffLocked(); err != nil {
			s.mu.Unlock()
			return nil, nil, err
		}
		op = &readyOp{done: make(chan struct{})}
		if !s.m.goTracked(func() { s.run(op) }) {
			s.mu.Unlock()
			return nil, nil, ErrClosed
		}
		s.op = op
	}
	s.mu.Unlock()

	select {
	case <-op.done:
		return op.tools, op.conn, op.err
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("server %q: gave up waiting for it to start and list its tools: %w", s.cfg.Name, ctx.Err())
	}
}

// backoffLocked refuses a start while the server is pausing after repeated failures.
func (s *server) backoffLocked() error {
	now := s.m.now()
	for len(s.failures) > 0 && now.Sub(s.failures[0]) > failureWindow {
		s.failures = s.failures[1:]
	}
	if len(s.failures) < maxFailedStarts {
		return nil
	}
	until := s.failures[len(s.failures)-1].Add(backoffPause)
	if !now.Before(until) {
		return nil
	}
	return fmt.Errorf("server %q failed to start %d times within %s; not starting it again for %s (last error: %v)",
		s.cfg.Name, len(s.failures), failureWindow, until.Sub(now).Round(time.Second), s.lastErr)
}

// run performs op: start the process unless one is alive, list the tools unless cached.
func (s *server) run(op *readyOp) {
	s.mu.Lock()
	c, tools := s.conn, s.tools
	s.mu.Unlock()

	var err error
	if !c.alive() {
		c, err = s.start()
		s.mu.Lock()
		closing := s.m.ctx.Err() != nil // checked under s.mu: see Manager.Close
		switch {
		case err != nil:
			s.failures = append(s.failures, s.m.now())
			s.lastErr = err
			err = fmt.Errorf("server %q: %w", s.cfg.Name, err)
		case !closing:
			s.conn = c
		}
		s.mu.Unlock()
		switch {
		case err == nil && closing: // Close has begun and will not see c
			_ = c.shutdown()
			c, err = nil, ErrClosed
		case err != nil && !closing:
			s.log.Warn("downstream server failed to start", "err", err)
		}
	}
	if err == nil && tools == nil {
		tools, err = s.list(c)
		if err == nil {
			s.mu.Lock()
			s.tools = tools
			s.mu.Unlock()
		}
	}

	s.mu.Lock()
	s.op = nil
	s.mu.Unlock()
	if err != nil {
		tools, c = nil, nil
	}
	op.tools, op.conn, op.err = tools, c, err
	close(op.done)
}

// start spawns the process and performs the MCP handshake within StartTimeout. Its
// error does not name the server; the caller adds that.
func (s *server) start() (*conn, error) {
	timeout := s.m.opts.StartTimeout
	c, err := spawn(s.m, s.cfg, s.log)
	if err != nil {
		return nil, fmt.Errorf("start command %q (mcp_servers.command): %w", s.cfg.Command, err)
	}
	ctx, cancel := context.WithTimeoutCause(s.m.ctx, timeout, errTimeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel) // the process died: stop waiting
	defer stop()

	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "sessionplane", Version: "1"}
	res, err := c.client.Initialize(ctx, req)
	if err != nil {
		reason, _ := s.failure(ctx, c, err, "initialize", timeout, "StartTimeout")
		_ = c.shutdown()
		if tail := c.stderrTail(); tail != "" {
			reason = fmt.Errorf("%w; its stderr ends with: %s", reason, tail)
		}
		return nil, reason
	}
	s.log.Info("downstream server started", "pid", c.pid(), "command", s.cfg.Command,
		"server_name", res.ServerInfo.Name, "server_version", res.ServerInfo.Version, "protocol", res.ProtocolVersion)
	return c, nil
}

// list fetches every page of the server's tools within ListTimeout.
func (s *server) list(c *conn) ([]Tool, error) {
	timeout := s.m.opts.ListTimeout
	ctx, cancel := context.WithTimeoutCause(s.m.ctx, timeout, errTimeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	res, err := c.client.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		reason, lost := s.failure(ctx, c, err, "list tools", timeout, "ListTimeout")
		return nil, fmt.Errorf("server %q: %w%s", s.cfg.Name, reason, restartNote(lost))
	}
	tools := make([]Tool, 0, len(res.Tools))
	for _, t := range res.Tools {
		tools = append(tools, toolFrom(s.cfg.Name, t))
	}
	return tools, nil
}

// call runs one tools/call on c within CallTimeout and ctx.
func (s *server) call(ctx context.Context, c *conn, tool string, args any) (*mcp.CallToolResult, error) {
	timeout := s.m.opts.CallTimeout
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	req.Params.Arguments = args
	res, err := c.client.CallTool(ctx, req)
	if err != nil {
		reason, lost := s.failure(ctx, c, err, "call", timeout, "CallTimeout")
		return nil, fmt.Errorf("downstream: server %q tool %q: %w%s", s.cfg.Name, tool, reason, restartNote(lost))
	}
	return res, nil
}

// errTimeout is the cause of a context that ran out of one of our timeouts.
var errTimeout = errors.New("downstream timeout")

// failure explains why a request to c within ctx failed with err: the process exited or
// its pipe broke (lost is then true, and c is discarded so that the next use starts a new
// process), the Manager closed, one of our timeouts (option names its Options field), the
// caller's context, or an error the server returned.
func (s *server) failure(ctx context.Context, c *conn, err error, what string, timeout time.Duration, option string) (reason error, lost bool) {
	if c.ctx.Err() == nil && errors.Is(err, transport.ErrTransportClosed) {
		// The pipe broke before the reaper saw the exit: give it a moment to say why.
		c.waitExited(time.Second)
	}
	if cause := context.Cause(c.ctx); c.ctx.Err() != nil && !errors.Is(cause, errShutdown) {
		s.discard(c)
		return fmt.Errorf("%s: %w", what, cause), true
	}
	if s.m.ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ErrClosed), false
	}
	if errors.Is(err, transport.ErrTransportClosed) {
		s.discard(c)
		return fmt.Errorf("%s: connection to the server lost: %w", what, err), true
	}
	if errors.Is(context.Cause(ctx), errTimeout) {
		return fmt.Errorf("%s: no answer within %s (Options.%s): %w", what, timeout, option, context.DeadlineExceeded), false
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s abandoned: %w", what, ctx.Err()), false
	}
	return fmt.Errorf("%s: %w", what, err), false
}

// restartNote tells the caller a lost server comes back by itself.
func restartNote(lost bool) string {
	if lost {
		return "; it will be restarted on next use"
	}
	return ""
}

// discard forgets c if it is the server's current connection and shuts it down in the
// background (it is dead or broken already; shutting down reaps it and frees its pipes).
func (s *server) discard(c *conn) {
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	s.mu.Unlock()
	shutdown := func() { _ = c.shutdown() }
	if !s.m.goTracked(shutdown) {
		shutdown() // Close has begun and no longer sees c: do it here
	}
}

// detach removes and returns the current connection, for Close.
func (s *server) detach() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conn
	s.conn = nil
	return c
}
