package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/store"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	t.Setenv("SESSIONPLANE_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func seedDB(t *testing.T, path string, n int) {
	t.Helper()
	st, err := store.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.EnsureSession(ctx, store.Session{Key: "agent:main:main"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := st.AppendMessage(ctx, store.Message{SessionKey: "agent:main:main", Role: store.RoleUser, Trust: store.TrustUser,
			Content: store.Content{Text: fmt.Sprintf("message %d about the deploy", i)}}); err != nil {
			t.Fatal(err)
		}
	}
}

// What was seen 5: corruption went unnoticed. `db check` on a
// deliberately damaged copy exits 1 and says "corrupt" and what to do; the
// original passes.
//
// On SQLite always: it damages the bytes of a database file.
func TestDBCheckDamagedCopy(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "sp.db")
	seedDB(t, orig, 200)
	b, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(dir, "damaged.db")
	// 4 KB of random bytes over a page in the middle of the file.
	junk := make([]byte, 4096)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range junk {
		junk[i] = byte(r.IntN(256))
	}
	mid := (len(b) / 2 / 4096) * 4096
	copy(b[mid:], junk)
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "db", "check", "--db", orig)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("check of the original: %d %q %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "db", "check", "--db", damaged)
	if code != 1 || !strings.Contains(errs, "corrupt") || !strings.Contains(errs, "What to do") || !strings.Contains(errs, damaged) {
		t.Fatalf("check of the damaged copy: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "db", "check", "--db", filepath.Join(dir, "absent.db")); code != 1 || !strings.Contains(errs, "absent.db") {
		t.Fatalf("check of a missing file: %d %q", code, errs)
	}
	if code, _, _ := runCLI(t, "db", "backup", "--db", orig); code != 2 {
		t.Fatalf("backup without --to: exit %d, want 2", code)
	}
}

// `db backup` while another process writes: the copy passes
// integrity_check and is one consistent snapshot (every recorded call's
// task present, message counts equal to the messages), and the live
// database has every write.
//
// On SQLite always: `db backup` writes an SQLite file copy (VACUUM INTO),
// checked here with integrity_check.
func TestDBBackupWhileAnotherProcessWrites(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "sp.db")
	p := startServer(t, "--db", db)
	p.send(initMsg)
	p.response(1)
	writes := 400
	if longRun() {
		writes = 5000
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < writes; i++ {
			if _, err := io.WriteString(p.stdin, callMsg(i+2, "task_list", fmt.Sprintf(`{"action":"create","list":"b","title":"t%d"}`, i))+"\n"); err != nil {
				return
			}
		}
	}()
	// Back up once some writes are in, while the rest keep coming.
	seen := map[float64]bool{}
	collect := func(n int) {
		for len(seen) < n {
			m := p.next()
			if id, ok := m["id"].(float64); ok && id >= 2 {
				seen[id] = true
			}
		}
	}
	collect(50)
	to := filepath.Join(dir, "backup.db")
	cmd := exec.Command(buildBinary(t), "db", "backup", "--db", db, "--to", to)
	cmd.Env = append(os.Environ(), "SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("integrity check passed")) {
		t.Fatalf("db backup: %v\n%s", err, out)
	}
	collect(writes)
	wg.Wait()
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("server exit %d", code)
	}

	cp, err := store.Open(context.Background(), to, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	var integrity string
	if err := cp.DB().QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check of the copy: %q %v", integrity, err)
	}
	var tasks, msgs, counted int
	if err := cp.DB().QueryRow(`SELECT count(*) FROM tasks`).Scan(&tasks); err != nil {
		t.Fatal(err)
	}
	if err := cp.DB().QueryRow(`SELECT count(*) FROM messages WHERE session_key = 'agent:main:main'`).Scan(&msgs); err != nil {
		t.Fatal(err)
	}
	if err := cp.DB().QueryRow(`SELECT message_count FROM sessions WHERE key = 'agent:main:main'`).Scan(&counted); err != nil {
		t.Fatal(err)
	}
	if tasks < 49 || tasks > writes {
		t.Fatalf("tasks in the copy = %d, want between 49 and %d", tasks, writes)
	}
	// A create commits its task, then records the call (2 messages, one
	// transaction): a snapshot holds every recorded call's task.
	if msgs != counted || msgs%2 != 0 || msgs/2 > tasks {
		t.Fatalf("copy is not one snapshot: %d messages, message_count %d, %d tasks", msgs, counted, tasks)
	}
	var final int
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.DB().QueryRow(`SELECT count(*) FROM tasks`).Scan(&final); err != nil || final != writes {
		t.Fatalf("tasks in the live database = %d (%v), want %d", final, err, writes)
	}
}

// What was seen 6: a bad --http address was reported only after the
// database was opened. It is refused first; no database file is created.
//
// On SQLite always: it checks that no file or directory is created.
func TestBadHTTPAddressBeforeAnythingOpens(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "never", "sp.db")
	for _, addr := range []string{"nonsense", "127.0.0.1", "127.0.0.1:notaport"} {
		code, _, errs := runCLI(t, "--http", addr, "--db", db)
		if code != 2 || !strings.Contains(errs, "--http") {
			t.Fatalf("--http %q: exit %d, %q", addr, code, errs)
		}
	}
	if _, err := os.Stat(filepath.Dir(db)); err == nil {
		t.Fatal("the database directory was created before --http was checked")
	}
}
