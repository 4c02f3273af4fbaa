//go:build unix

package downstream

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// openFDs counts this process's open file descriptors (Linux /proc).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors here: %v", err)
	}
	return len(ents)
}

// Starting two downstream servers, calling one, crashing the other and
// closing the manager, 20 times over, leaves no child process (not even a
// zombie) and no file descriptor (pipes) behind.
func TestManagersLeaveNoProcessesOrFileDescriptors(t *testing.T) {
	f := newFake(t)
	ctx := context.Background()
	cycle := func() {
		m := NewManager([]config.MCPServer{f.server("one"), f.server("two")}, &Options{Logger: slog.New(slog.NewTextHandler(f.log, nil))})
		if _, err := m.Tools(ctx); err != nil {
			t.Fatal(err)
		}
		if text, isError := call(t, m, "one__echo", `{"text":"hi"}`); isError || text != "hi" {
			t.Fatalf("echo: %q %v", text, isError)
		}
		// A server that dies on its own is reaped too.
		_, _, _ = m.Call(ctx, "two__crash", nil)
		if err := m.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	cycle() // warm up
	before := openFDs(t)
	for i := 0; i < 20; i++ {
		cycle()
	}
	pids := readPIDs(t, f.pidFile)
	if len(pids) != 42 {
		t.Fatalf("%d server processes started, want 42", len(pids))
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("process %d still exists after Close", pid)
		}
	}
	if after := openFDs(t); after > before {
		t.Fatalf("open file descriptors grew from %d to %d over 20 manager cycles", before, after)
	}
}
