package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// What was seen 4: --db 'a#b.db' created an empty a#b.db and put the
// database in "a" (0644); p%41.db wrote pA.db; q.db?mode=ro failed about
// _pragma. A path is a file name now: each is created as named, 0600.
func TestDatabasePathIsAFileName(t *testing.T) {
	for _, name := range []string{"a#b.db", "p%41.db", "q.db?mode=ro", "sp ace&x=1.db"} {
		dir := filepath.Join(t.TempDir(), "sub")
		path := filepath.Join(dir, name)
		s, err := Open(context.Background(), path, nil)
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		if _, err := s.EnsureSession(context.Background(), Session{Key: "agent:main:main"}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s.Close()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			if n := e.Name(); n != name+"-wal" && n != name+"-shm" {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if fmt.Sprint(names) != fmt.Sprint([]string{name}) {
			t.Fatalf("%s: files in the directory: %v", name, names)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
			t.Fatalf("%s: %v %v", name, fi, err)
		}
		if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
			t.Fatalf("%s: directory mode %v", name, di.Mode().Perm())
		}
		// Reopened, the data is there.
		s2 := openTest(t, path)
		if _, err := s2.GetSession(context.Background(), "agent:main:main"); err != nil {
			t.Fatalf("%s: reopen: %v", name, err)
		}
		s2.Close()
	}
}

// What was seen 5: a read-only database failed with "attempt to write a
// readonly database (8)", naming neither the file nor the fix. An explicit
// file: URI with mode=ro (SQLite's own parameter, honoured in that form)
// makes one without relying on permissions, which root ignores.
func TestReadOnlyDatabaseNamedWithFix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	s := openTest(t, path)
	if _, err := s.EnsureSession(context.Background(), Session{Key: "agent:main:main"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro, err := Open(context.Background(), "file:"+path+"?mode=ro", nil)
	if err == nil {
		defer ro.Close()
		_, err = ro.EnsureSession(context.Background(), Session{Key: "agent:main:other"})
	}
	if !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "--db") {
		t.Fatalf("err = %v, want ErrReadOnly naming %s and the fix", err, path)
	}
}

// damage overwrites the root page of the messages table with random bytes.
func damage(t *testing.T, path string) {
	t.Helper()
	s := openTest(t, path)
	var root, pageSize int64
	if err := s.DB().QueryRow(`SELECT rootpage FROM sqlite_master WHERE name = 'messages'`).Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, pageSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range junk {
		junk[i] = byte(r.IntN(256))
	}
	if _, err := f.WriteAt(junk, (root-1)*pageSize); err != nil {
		t.Fatal(err)
	}
}

// What was seen 5: after random bytes over a page the server started,
// logged nothing and kept writing. Now a statement that meets the damage
// fails with ErrCorrupt naming the file and the fix, the damage is logged
// loudly, what does not need the page is still served, and Check says so.
func TestCorruptPageDetectedAndServedAround(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sp.db")
	s := openTest(t, path)
	seedSearchCorpus(t, s, 20)
	s.Close()
	damage(t, path)

	var logs bytes.Buffer
	st, err := Open(context.Background(), path, &Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer st.Close()
	_, _, err = st.History(context.Background(), HistoryQuery{Key: "agent:main:corpus", Limit: 10})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "db check") {
		t.Fatalf("history over a damaged page: %v", err)
	}
	if !strings.Contains(logs.String(), "DATABASE DAMAGED") || !strings.Contains(logs.String(), path) {
		t.Fatalf("damage not logged with the file: %q", logs.String())
	}
	if _, err := st.EnsureSession(context.Background(), Session{Key: "agent:main:still"}); err != nil {
		t.Fatalf("sessions are still served: %v", err)
	}
	res, err := Check(context.Background(), path)
	if err != nil || res.OK || len(res.Problems) == 0 {
		t.Fatalf("check of a damaged file: %+v %v", res, err)
	}
}

// Check and Backup on a healthy file; the copy has the same rows.
func TestCheckAndBackupHealthy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sp.db")
	s := openTest(t, path)
	seedSearchCorpus(t, s, 30)
	res, err := Check(context.Background(), path)
	if err != nil || !res.OK {
		t.Fatalf("check: %+v %v", res, err)
	}
	to := filepath.Join(dir, "copy#1.db")
	res, err = Backup(context.Background(), path, to)
	if err != nil || !res.OK {
		t.Fatalf("backup: %+v %v", res, err)
	}
	fi, err := os.Stat(to)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	cp := openTest(t, to)
	var n int
	if err := cp.DB().QueryRow(`SELECT count(*) FROM messages`).Scan(&n); err != nil || n != 30 {
		t.Fatalf("messages in the copy = %d (%v)", n, err)
	}
	if _, err := Backup(context.Background(), path, to); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("backup over an existing file: %v", err)
	}
	if _, err := Check(context.Background(), filepath.Join(dir, "absent.db")); err == nil {
		t.Fatal("check of a missing file succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "absent.db")); err == nil {
		t.Fatal("check created the missing file")
	}
}
