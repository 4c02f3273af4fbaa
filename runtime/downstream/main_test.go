package downstream

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"go.uber.org/goleak"
)

// The test binary doubles as the fake downstream server: with DOWNSTREAM_FAKE=1 in its
// environment it serves MCP on stdio instead of running tests.
const (
	fakeEnv        = "DOWNSTREAM_FAKE"         // "1": be the fake server
	fakeModeEnv    = "DOWNSTREAM_FAKE_MODE"    // see runFakeServer
	fakePIDFileEnv = "DOWNSTREAM_FAKE_PIDFILE" // file the fake appends its pid to
	bigSize        = 200 << 10
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" {
		os.Exit(runFakeServer())
	}
	goleak.VerifyTestMain(m) // no goroutine outlives the tests (Close ends readers and waiters)
}

// runFakeServer serves the fake tools on stdin/stdout and returns the exit code. Its
// mode ($DOWNSTREAM_FAKE_MODE) changes that:
//
//	exit      write to stderr and exit 2 before serving
//	mute      read stdin, never answer, exit at EOF
//	stubborn  start a "sleep" child in its process group, serve, then at stdin EOF
//	          ignore SIGTERM and hang (only SIGKILL ends it)
//	sleep     hang
func runFakeServer() int {
	if err := appendPID(os.Getenv(fakePIDFileEnv), os.Getpid()); err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 1
	}
	mode := os.Getenv(fakeModeEnv)
	switch mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "fake: refusing to start (mode=exit)")
		return 2
	case "mute":
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	case "sleep":
		time.Sleep(time.Hour)
		return 0
	case "stubborn":
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), fakeModeEnv+"=sleep", fakePIDFileEnv+"=") // we write its pid
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "fake:", err)
			return 1
		}
		if err := appendPID(os.Getenv(fakePIDFileEnv), child.Process.Pid); err != nil {
			fmt.Fprintln(os.Stderr, "fake:", err)
			return 1
		}
	}
	fmt.Fprintln(os.Stderr, "fake: ready")

	s := mcpserver.NewMCPServer("fake", "1.0.0",
		mcpserver.WithToolCapabilities(false),
		mcpserver.WithPaginationLimit(2), // several pages of tools/list
		mcpserver.WithRecovery(),
	)
	readOnly := func(v bool) mcp.ToolOption { return mcp.WithReadOnlyHintAnnotation(v) }
	text := func(t string) (*mcp.CallToolResult, error) { return mcp.NewToolResultText(t), nil }

	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("Returns its text."), readOnly(true),
		mcp.WithString("text", mcp.Required())),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return text(req.GetString("text", ""))
		})
	s.AddTool(mcp.NewTool("slow", mcp.WithDescription("Sleeps ms milliseconds."), readOnly(true),
		mcp.WithNumber("ms", mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			fmt.Fprintln(os.Stderr, "fake: slow started")
			t := time.NewTimer(time.Duration(req.GetFloat("ms", 0)) * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
				return text("slept")
			case <-ctx.Done():
				fmt.Fprintln(os.Stderr, "fake: slow cancelled")
				return nil, ctx.Err()
			}
		})
	s.AddTool(mcp.NewTool("crash", mcp.WithDescription("Exits with status 3."), readOnly(false)),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			fmt.Fprintln(os.Stderr, "fake: crashing")
			os.Exit(3)
			return nil, nil
		})
	s.AddTool(mcp.NewTool("big", mcp.WithDescription("Returns 200 KiB of text."), readOnly(true)),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return text(strings.Repeat("x", bigSize))
		})
	s.AddTool(mcp.NewTool("fail", mcp.WithDescription("Returns an isError result."), readOnly(true)),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultError("boom"), nil
		})
	s.AddTool(mcp.NewTool("env", mcp.WithDescription("Returns an environment variable."), readOnly(true),
		mcp.WithString("name", mcp.Required())),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return text(os.Getenv(req.GetString("name", "")))
		})
	s.AddTool(mcp.NewTool("image", mcp.WithDescription("Returns text and a 4-byte PNG."), readOnly(true)),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultImage("picture", "iVBORw==", "image/png"), nil
		})
	s.AddTool(mcp.NewTool("dotted.name", mcp.WithDescription("A name outside [A-Za-z0-9_-]."), readOnly(true)),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return text("dotted ok")
		})

	if err := mcpserver.ServeStdio(s); err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 1
	}
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "fake: ignoring stdin EOF and SIGTERM")
		time.Sleep(time.Hour)
	}
	return 0
}

// appendPID appends pid to the file at path, if path is set.
func appendPID(path string, pid int) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, pid); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// logSink collects log output so tests can wait for a line instead of sleeping.
type logSink struct {
	mu      sync.Mutex
	buf     strings.Builder
	changed chan struct{} // closed and replaced on every write
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything logged so far.
func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor waits until a logged line contains every one of parts.
func (s *logSink) waitFor(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for _, line := range strings.Split(s.buf.String(), "\n") {
			if containsAll(line, parts...) {
				s.mu.Unlock()
				return
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no log line with %q; log:\n%s", parts, s.String())
		}
	}
}

// containsAll reports whether s contains every one of parts.
func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// readPIDs returns the pids the fake servers wrote to path (none if it does not exist).
func readPIDs(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file %s: %v", path, err)
		}
		pids = append(pids, pid)
	}
	return pids
}
