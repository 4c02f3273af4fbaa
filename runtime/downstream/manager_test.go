//go:build unix

package downstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// fake is a test setup: fake servers, the pid file they share, and the log they write to.
type fake struct {
	pidFile string
	log     *logSink
}

func newFake(t *testing.T) *fake {
	t.Helper()
	return &fake{pidFile: filepath.Join(t.TempDir(), "pids"), log: newLogSink()}
}

// server is a config entry that runs the test binary as the fake server.
func (f *fake) server(name string, env ...string) config.MCPServer {
	e := map[string]string{
		fakeEnv:        "1",
		fakePIDFileEnv: f.pidFile,
		// Under -race a process lingers 1s at exit, by default, to report races.
		"GORACE": strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0"),
	}
	for i := 0; i+1 < len(env); i += 2 {
		e[env[i]] = env[i+1]
	}
	return config.MCPServer{Name: name, Command: os.Args[0], Env: e}
}

// manager builds a Manager on servers, logging to f.log, closed when the test ends.
func (f *fake) manager(t *testing.T, opts Options, servers ...config.MCPServer) *Manager {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := NewManager(servers, &opts)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// call calls qualified with args and fails the test on a transport error.
func call(t *testing.T, m *Manager, qualified, args string) (string, bool) {
	t.Helper()
	text, isError, err := m.Call(context.Background(), qualified, json.RawMessage(args))
	if err != nil {
		t.Fatalf("Call(%s): %v", qualified, err)
	}
	return text, isError
}

// gone reports whether no process (not even a zombie) has this pid.
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func TestToolsStartsLazilyAndListsEveryPage(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("fake"))

	if pids := readPIDs(t, f.pidFile); len(pids) != 0 {
		t.Fatalf("NewManager started processes %v; want none before first use", pids)
	}
	tools, err := m.Tools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tool := range tools {
		got = append(got, tool.Qualified)
	}
	want := []string{"fake__big", "fake__crash", "fake__dotted.name", "fake__echo", "fake__env", "fake__fail", "fake__image", "fake__slow"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("tools = %v, want %v (the fake pages them 2 at a time)", got, want)
	}
	byName := map[string]Tool{}
	for _, tool := range tools {
		byName[tool.Qualified] = tool
	}
	echo := byName["fake__echo"]
	if echo.Server != "fake" || echo.Name != "echo" || echo.Description != "Returns its text." || !echo.ReadOnly {
		t.Errorf("echo = %+v", echo)
	}
	var schema struct {
		Type       string                     `json:"type"`
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	if err := json.Unmarshal(echo.InputSchema, &schema); err != nil || schema.Type != "object" || schema.Properties["text"] == nil {
		t.Errorf("echo input schema = %s (%v)", echo.InputSchema, err)
	}
	if byName["fake__crash"].ReadOnly {
		t.Error("crash is ReadOnly; its readOnlyHint is false")
	}

	if _, err := m.Tools(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pids := readPIDs(t, f.pidFile); len(pids) != 1 {
		t.Fatalf("pids = %v after two Tools calls; want one process", pids)
	}
}

func TestCallStartsLazilyAndRoundTrips(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("fake", "FAKE_GREETING", "hello from Env"))

	tests := []struct {
		name, tool, args, want string
	}{
		{"echo", "fake__echo", `{"text":"héllo"}`, "héllo"},
		{"env from Env", "fake__env", `{"name":"FAKE_GREETING"}`, "hello from Env"},
		{"env from parent", "fake__env", `{"name":"PATH"}`, os.Getenv("PATH")},
		{"non-text content summarised", "fake__image", `{}`, "picture\n[image/png 4 bytes]"},
		{"name outside [A-Za-z0-9_-]", "fake__dotted.name", ``, "dotted ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, isError := call(t, m, tt.tool, tt.args)
			if got != tt.want || isError {
				t.Errorf("got %q (isError %v), want %q", got, isError, tt.want)
			}
		})
	}
	if pids := readPIDs(t, f.pidFile); len(pids) != 1 {
		t.Errorf("pids = %v; want the one process Call started", pids)
	}
	// The child's stderr reaches the logger, tagged with the server, at debug level.
	f.log.waitFor(t, "level=DEBUG", "server=fake", `line="fake: ready"`)
}

func TestIsErrorPassesThrough(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("fake"))
	got, isError := call(t, m, "fake__fail", `{}`)
	if got != "boom" || !isError {
		t.Errorf("got %q (isError %v), want %q (isError true)", got, isError, "boom")
	}
}

func TestOutputIsCapped(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		want  int
	}{
		{"default 64 KiB", 0, DefaultMaxOutputBytes},
		{"1000 bytes", 1000, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			m := f.manager(t, Options{MaxOutputBytes: tt.limit}, f.server("fake"))
			got, _ := call(t, m, "fake__big", `{}`)
			if len(got) > tt.want {
				t.Errorf("len = %d, want ≤ %d", len(got), tt.want)
			}
			head, note, ok := strings.Cut(got, "\n")
			if !ok || strings.Trim(head, "x") != "" || len(head) < tt.want-100 {
				t.Errorf("head is %d bytes, not the first ~%d bytes of the output", len(head), tt.want)
			}
			if wantNote := fmt.Sprintf("[output truncated: %d of %d bytes shown]", len(head), bigSize); note != wantNote {
				t.Errorf("note = %q, want %q", note, wantNote)
			}
		})
	}
}

func TestCallTimeoutNamesServerToolAndTimeout(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{CallTimeout: 300 * time.Millisecond}, f.server("fake"))
	call(t, m, "fake__echo", `{"text":"warm up"}`) // the timeout is the call's, not the start's

	start := time.Now()
	_, _, err := m.Call(context.Background(), "fake__slow", json.RawMessage(`{"ms":60000}`))
	if err == nil {
		t.Fatal("slow call succeeded; want a timeout")
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("timeout took %s", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !containsAll(err.Error(), `server "fake"`, `tool "slow"`, "300ms", "CallTimeout") {
		t.Errorf("err = %v; want DeadlineExceeded naming server, tool and timeout", err)
	}
	f.log.waitFor(t, "fake: slow cancelled") // the server was told to stop

	if got, _ := call(t, m, "fake__echo", `{"text":"still here"}`); got != "still here" {
		t.Errorf("echo after timeout = %q", got)
	}
	if pids := readPIDs(t, f.pidFile); len(pids) != 1 {
		t.Errorf("pids = %v; a timeout must not restart the server", pids)
	}
}

func TestCancelledContextReturnsPromptly(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("fake"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := m.Call(ctx, "fake__slow", json.RawMessage(`{"ms":60000}`))
		done <- err
	}()
	f.log.waitFor(t, "fake: slow started")
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if d := time.Since(cancelled); d > 2*time.Second {
			t.Errorf("Call returned %s after cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Call did not return after its context was cancelled")
	}
	f.log.waitFor(t, "fake: slow cancelled")
}

func TestCrashedServerErrsThenRestarts(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("fake"))
	call(t, m, "fake__echo", `{"text":"up"}`)

	_, _, err := m.Call(context.Background(), "fake__crash", nil)
	if err == nil || !containsAll(err.Error(), `server "fake"`, `tool "crash"`, "exited (exit status 3)", "restarted") {
		t.Fatalf("err = %v; want the exit status, naming server and tool", err)
	}
	pids := readPIDs(t, f.pidFile)
	if len(pids) != 1 || !gone(pids[0]) {
		t.Fatalf("pids = %v; want the crashed one reaped", pids)
	}
	f.log.waitFor(t, "level=WARN", "exited unexpectedly", "server=fake", "fake: crashing")

	if got, _ := call(t, m, "fake__echo", `{"text":"back"}`); got != "back" {
		t.Errorf("echo after crash = %q", got)
	}
	if pids := readPIDs(t, f.pidFile); len(pids) != 2 || gone(pids[1]) {
		t.Errorf("pids = %v; want a second, running process", pids)
	}
}

func TestBadCommandDoesNotHideOtherServers(t *testing.T) {
	f := newFake(t)
	bad := config.MCPServer{Name: "bad", Command: "/nonexistent/sessionplane-no-such-server"}
	m := f.manager(t, Options{}, f.server("fake"), bad)

	tools, err := m.Tools(context.Background())
	if err == nil || !containsAll(err.Error(), `server "bad"`, "/nonexistent/sessionplane-no-such-server", "no such file") {
		t.Errorf("err = %v; want one naming the bad server and its command", err)
	}
	if len(tools) != 8 || tools[0].Server != "fake" {
		t.Errorf("got %d tools; want the fake server's 8", len(tools))
	}
	if _, _, err := m.Call(context.Background(), "bad__anything", nil); err == nil || !strings.Contains(err.Error(), `server "bad"`) {
		t.Errorf("Call on the bad server: err = %v", err)
	}
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time        { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration)   { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func (c *clock) set(m *Manager) *clock { m.now = c.now; return c }

func TestRepeatedStartFailuresBackOff(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("dying", fakeModeEnv, "exit"))
	clk := (&clock{t: time.Now()}).set(m)

	for i := range 3 {
		_, err := m.Tools(context.Background())
		// The start error carries the exit status and the end of the child's stderr.
		if err == nil || !containsAll(err.Error(), `server "dying"`, "exit status 2", "fake: refusing to start") {
			t.Fatalf("start %d: err = %v", i+1, err)
		}
		clk.add(time.Second)
	}
	_, err := m.Tools(context.Background())
	if err == nil || !containsAll(err.Error(), `server "dying"`, "failed to start 3 times", "not starting it again", "exit status 2") {
		t.Fatalf("4th attempt: err = %v; want a fail-fast backoff error", err)
	}
	if pids := readPIDs(t, f.pidFile); len(pids) != 3 {
		t.Errorf("pids = %v; want 3 starts, none during the backoff", pids)
	}

	clk.add(backoffPause)
	if _, err := m.Tools(context.Background()); err == nil || strings.Contains(err.Error(), "not starting it again") {
		t.Errorf("after the pause: err = %v; want a new start attempt", err)
	}
	if pids := readPIDs(t, f.pidFile); len(pids) != 4 {
		t.Errorf("pids = %v; want a 4th start after the pause", pids)
	}
}

func TestUnknownNames(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("fake"))
	tests := []struct{ qualified, want string }{
		{"fake__nope", `server "fake" has no tool "nope"`},
		{"other__echo", `no configured server "other"`},
		{"echo", `no configured server "echo"`},
	}
	for _, tt := range tests {
		_, _, err := m.Call(context.Background(), tt.qualified, nil)
		if !errors.Is(err, ErrUnknownTool) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Call(%q): err = %v; want ErrUnknownTool with %q", tt.qualified, err, tt.want)
		}
	}
	if _, _, err := m.Call(context.Background(), "fake__echo", json.RawMessage(`[1]`)); err == nil || !strings.Contains(err.Error(), "JSON object") {
		t.Errorf("array arguments: err = %v", err)
	}
}

func TestCloseReapsEveryProcessAndIsIdempotent(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("one"), f.server("two"), f.server("unused"))
	if _, err := m.Tools(context.Background()); err != nil {
		t.Fatal(err)
	}
	pids := readPIDs(t, f.pidFile)
	if len(pids) != 3 {
		t.Fatalf("pids = %v; want 3", pids)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("process %d still exists after Close", pid)
		}
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := m.Call(context.Background(), "one__echo", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Call after Close: err = %v, want ErrClosed", err)
	}
	if _, err := m.Tools(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Tools after Close: err = %v, want ErrClosed", err)
	}
}

func TestCloseEndsCallsInFlight(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("fake"))
	done := make(chan error, 1)
	go func() {
		_, _, err := m.Call(context.Background(), "fake__slow", json.RawMessage(`{"ms":60000}`))
		done <- err
	}()
	f.log.waitFor(t, "fake: slow started")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("call in flight: err = %v, want ErrClosed", err)
	}
	for _, pid := range readPIDs(t, f.pidFile) {
		if !gone(pid) {
			t.Errorf("process %d still exists after Close", pid)
		}
	}
}

func TestConcurrentCallsShareOneStart(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("fake"))
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprintf("call %d", i)
			tool, args := "fake__echo", fmt.Sprintf(`{"text":%q}`, want)
			if i%4 == 3 {
				tool, args, want = "fake__fail", `{}`, "boom"
			}
			got, isError, err := m.Call(context.Background(), tool, json.RawMessage(args))
			if err != nil || got != want || isError != (tool == "fake__fail") {
				errs <- fmt.Errorf("%s %s = %q, %v, %v; want %q", tool, args, got, isError, err, want)
			}
		})
	}
	wg.Go(func() {
		if _, err := m.Tools(context.Background()); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if pids := readPIDs(t, f.pidFile); len(pids) != 1 {
		t.Errorf("pids = %v; concurrent first uses must share one start", pids)
	}
}

func TestStartTimeout(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{StartTimeout: 300 * time.Millisecond}, f.server("mute", fakeModeEnv, "mute"))
	start := time.Now()
	_, _, err := m.Call(context.Background(), "mute__echo", nil)
	if !errors.Is(err, context.DeadlineExceeded) || !containsAll(err.Error(), `server "mute"`, "300ms", "StartTimeout") {
		t.Errorf("err = %v; want a start timeout naming the server", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("start timeout took %s", d)
	}
	pids := readPIDs(t, f.pidFile)
	if len(pids) != 1 || !gone(pids[0]) {
		t.Errorf("pids = %v; want the mute server stopped and reaped", pids)
	}
}

// dead reports whether pid is gone or a zombie: a grandchild is reaped by whoever
// inherits it, not by us.
func dead(pid int) bool {
	if gone(pid) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return os.IsNotExist(err)
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

func TestCloseKillsServersThatIgnoreEOFAndSIGTERM(t *testing.T) {
	f := newFake(t)
	m := f.manager(t, Options{}, f.server("stubborn", fakeModeEnv, "stubborn"))
	m.graces = graces{stdin: 200 * time.Millisecond, term: 200 * time.Millisecond, kill: 5 * time.Second, drain: time.Second}
	call(t, m, "stubborn__echo", `{"text":"x"}`)
	pids := readPIDs(t, f.pidFile) // the server, then its sleeping child
	if len(pids) != 2 {
		t.Fatalf("pids = %v; want the server and its child", pids)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !gone(pids[0]) {
		t.Errorf("server %d still exists after Close", pids[0])
	}
	if !dead(pids[1]) {
		t.Errorf("server's child %d still running after Close: the process group was not killed", pids[1])
	}
	f.log.waitFor(t, "ignored SIGTERM; sending SIGKILL", "server=stubborn")
}
