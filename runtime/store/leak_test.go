package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine its tests started is still
// running after the last test: whoever starts a goroutine must end it
// (Close is cancel, then wait).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openFDs counts this process's open file descriptors (Linux /proc).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors here: %v", err)
	}
	return len(ents)
}

// Opening, writing, searching and closing a store 20 times leaves no file
// descriptor open: the database, its WAL and shm files and every pooled
// connection are closed by Close.
func TestOpenCloseLeavesNoFileDescriptors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cycle := func(i int) {
		st, err := Open(ctx, filepath.Join(dir, "fd.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		key := "agent:main:fd"
		if _, err := st.EnsureSession(ctx, Session{Key: key}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AppendMessage(ctx, Message{SessionKey: key, Role: RoleUser, Trust: TrustUser, Content: Content{Text: "descriptor count"}}); err != nil {
			t.Fatal(err)
		}
		hits := 0
		if err := st.Search(ctx, SearchQuery{Query: "descriptor"}, func(Hit) bool { hits++; return true }); err != nil || hits == 0 {
			t.Fatalf("search: %d hits, %v", hits, err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	cycle(-1) // warm up: anything opened once per process (the runtime's own) is opened now
	before := openFDs(t)
	for i := 0; i < 20; i++ {
		cycle(i)
	}
	if after := openFDs(t); after > before {
		t.Fatalf("open file descriptors grew from %d to %d over 20 open/close cycles", before, after)
	}
}
