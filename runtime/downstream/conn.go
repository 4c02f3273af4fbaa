package downstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// graces bounds each step of stopping a server.
type graces struct {
	stdin time.Duration // after stdin is closed, for the server to exit by itself
	term  time.Duration // after SIGTERM to its process group
	kill  time.Duration // after SIGKILL to its process group
	drain time.Duration // after exit, for the stderr reader to reach EOF
}

const (
	stderrLineMax = 4 << 10 // longer stderr lines are logged in pieces
	stderrTailN   = 5       // stderr lines kept for exit reports
)

// errShutdown is the cause of a connection we shut down ourselves.
var errShutdown = errors.New("downstream server shut down")

// conn is one running server process and the MCP client talking to it over its stdin and
// stdout. We own the process (not mcp-go's transport), so that we reap it as soon as it
// exits, see its exit status, and signal its whole process group.
type conn struct {
	name   string
	log    *slog.Logger
	cmd    *exec.Cmd
	client *client.Client
	graces graces

	stdoutR *os.File // read by the transport's read loop
	stderrR *os.File // read by readStderr

	// ctx is cancelled, with the reason as its cause, as soon as the connection is no
	// longer usable: the process exited, or we shut it down.
	ctx    context.Context
	cancel context.CancelCauseFunc

	exited     chan struct{} // closed once the process is reaped
	stderrDone chan struct{} // closed when readStderr returns
	finished   chan struct{} // closed when the reaper has released everything
	stopping   atomic.Bool   // set by shutdown: an exit after it is expected, not a crash

	tailMu sync.Mutex
	tail   []string // the last stderrTailN lines of stderr

	shutOnce sync.Once
	shutErr  error
}

// spawn starts cfg's command with pipes for stdin, stdout and stderr, and an MCP client
// on the first two. It does not perform the handshake. It runs on a goroutine the Manager
// tracks, so adding to m.wg here cannot race Close's Wait.
func spawn(m *Manager, cfg config.MCPServer, log *slog.Logger) (*conn, error) {
	if cfg.Command == "" {
		return nil, errors.New("no command configured")
	}
	cmd := exec.Command(cfg.Command, cfg.Args...)
	cmd.Env = childEnv(cfg.Env)
	setProcessGroup(cmd)

	var files []*os.File // every pipe end, closed on failure
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	fail := func(err error) (*conn, error) {
		for _, f := range files {
			_ = f.Close()
		}
		return nil, err
	}
	stdinR, stdinW, err := pipe()
	if err != nil {
		return fail(err)
	}
	stdoutR, stdoutW, err := pipe()
	if err != nil {
		return fail(err)
	}
	stderrR, stderrW, err := pipe()
	if err != nil {
		return fail(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	// The child has its ends now; ours must go, or we would never see EOF.
	_ = stdinR.Close()
	_ = stdoutW.Close()
	_ = stderrW.Close()

	ctx, cancel := context.WithCancelCause(context.Background())
	c := &conn{
		name:       cfg.Name,
		log:        log.With("pid", cmd.Process.Pid),
		cmd:        cmd,
		graces:     m.graces,
		stdoutR:    stdoutR,
		stderrR:    stderrR,
		ctx:        ctx,
		cancel:     cancel,
		exited:     make(chan struct{}),
		stderrDone: make(chan struct{}),
		finished:   make(chan struct{}),
	}
	c.client = client.NewClient(transport.NewIO(stdoutR, stdinW, nil))
	// With NewIO, Start only launches the transport's read loop; it cannot fail.
	_ = c.client.Start(context.Background())

	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		c.readStderr()
	}()
	go func() {
		defer m.wg.Done()
		c.reap()
	}()
	return c, nil
}

// childEnv is the parent's environment plus extra (which wins on a clash).
func childEnv(extra map[string]string) []string {
	env := os.Environ()
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// alive reports whether c is a usable connection. A nil conn is not.
func (c *conn) alive() bool { return c != nil && c.ctx.Err() == nil }

// pid is the process id of the server.
func (c *conn) pid() int { return c.cmd.Process.Pid }

// waitExited waits up to d for the process to be reaped, and reports whether it was.
func (c *conn) waitExited(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.exited:
		return true
	case <-t.C:
		return false
	}
}

// reap waits for the process to exit, marks the connection dead with the exit status as
// the cause, kills whatever is left of its process group, and releases the pipes.
func (c *conn) reap() {
	defer close(c.finished)
	err := c.cmd.Wait()
	expected := c.stopping.Load() // read now: shutdown also runs after a crash, to clean up
	status := "exit status 0"
	if err != nil {
		status = err.Error()
	}
	c.cancel(fmt.Errorf("server process %d exited (%s)", c.cmd.Process.Pid, status))
	close(c.exited)
	killGroup(c.cmd) // children it left behind (npx → node) share its group

	t := time.NewTimer(c.graces.drain)
	select {
	case <-c.stderrDone:
	case <-t.C: // something outside the group holds stderr open: stop reading
		_ = c.stderrR.Close()
		<-c.stderrDone
	}
	t.Stop()
	if expected {
		c.log.Debug("downstream server stopped", "status", status)
	} else {
		c.log.Warn("downstream server exited unexpectedly", "status", status, "stderr_tail", c.stderrTail())
	}
	_ = c.client.Close()  // closes our end of stdin, fails requests in flight
	_ = c.stdoutR.Close() // ends the transport's read loop
}

// readStderr logs each stderr line of the server at debug level and keeps the last few.
func (c *conn) readStderr() {
	defer close(c.stderrDone)
	defer func() { _ = c.stderrR.Close() }()
	r := bufio.NewReaderSize(c.stderrR, stderrLineMax)
	for {
		chunk, err := r.ReadSlice('\n')
		if line := strings.TrimRight(string(chunk), "\r\n"); line != "" {
			c.log.Debug("downstream stderr", "line", line)
			c.tailMu.Lock()
			if len(c.tail) == stderrTailN {
				c.tail = c.tail[1:]
			}
			c.tail = append(c.tail, line)
			c.tailMu.Unlock()
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// stderrTail returns the last lines of the server's stderr, joined with " | ", each cut
// to 300 bytes.
func (c *conn) stderrTail() string {
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	lines := make([]string, len(c.tail))
	for i, l := range c.tail {
		lines[i] = truncateUTF8(l, 300)
	}
	return strings.Join(lines, " | ")
}

// shutdown stops the process: closes its stdin, then signals its process group with
// SIGTERM and then SIGKILL, waiting a bounded time after each; then waits for the reaper
// to release everything. Safe to call more than once and concurrently; every caller
// returns once the first has finished.
func (c *conn) shutdown() error {
	c.shutOnce.Do(func() {
		c.stopping.Store(true)
		c.cancel(errShutdown)
		_ = c.client.Close() // closes the server's stdin: a well-behaved server exits now
		if !c.waitExited(c.graces.stdin) {
			c.log.Debug("downstream server ignored stdin EOF; sending SIGTERM")
			terminateGroup(c.cmd)
			if !c.waitExited(c.graces.term) {
				c.log.Warn("downstream server ignored SIGTERM; sending SIGKILL")
				killGroup(c.cmd)
				if !c.waitExited(c.graces.kill) {
					c.shutErr = fmt.Errorf("downstream: server %q: process %d still running after SIGKILL", c.name, c.pid())
					return
				}
			}
		}
		<-c.finished
	})
	return c.shutErr
}
