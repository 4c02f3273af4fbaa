package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The -wal file stays bounded when a reader kept the log from restarting:
// while the reader holds its snapshot CheckpointWAL leaves the log (and
// does not fail), once it is gone the log is copied back and the file
// truncated, with every row still there.
func TestCheckpointWALTruncatesAGrownLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sp.db")
	s := openTest(t, path)
	ctx := context.Background()
	if err := s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE ballast (b BLOB)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	reader, err := s.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	rtx, err := reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rtx.QueryRowContext(ctx, `SELECT count(*) FROM ballast`).Scan(&n); err != nil { // the snapshot starts here
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ { // 40 × 64 KiB, one commit each: past the 1,000-page auto-checkpoint
		if err := s.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO ballast (b) VALUES (randomblob(65536))`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	const limit = 1 << 20
	if fileSize(t, path+"-wal") <= limit {
		t.Fatalf("-wal is %d bytes: the test needs it past %d", fileSize(t, path+"-wal"), limit)
	}
	done, err := s.checkpointWAL(ctx, limit)
	if err != nil || done {
		t.Fatalf("with a reader on the log: truncated %v, err %v; want false, nil", done, err)
	}
	if err := rtx.Commit(); err != nil {
		t.Fatal(err)
	}
	done, err = s.checkpointWAL(ctx, limit)
	if err != nil || !done {
		t.Fatalf("without readers: truncated %v, err %v; want true, nil", done, err)
	}
	if got := fileSize(t, path+"-wal"); got != 0 {
		t.Fatalf("-wal is %d bytes after the checkpoint, want 0", got)
	}
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM ballast`).Scan(&n); err != nil || n != 40 {
		t.Fatalf("ballast rows %d (%v), want 40", n, err)
	}
	// Below the limit nothing is asked of SQLite beyond a passive checkpoint.
	if done, err := s.CheckpointWAL(ctx); err != nil || done {
		t.Fatalf("an empty log: truncated %v, err %v; want false, nil", done, err)
	}
	// Every pooled connection still waits its full busy_timeout.
	var conns []*sql.Conn
	for i := 0; i < 4; i++ {
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var ms int64
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&ms); err != nil || ms != s.busy.Milliseconds() {
			t.Fatalf("connection %d: busy_timeout %d (%v), want %d", i, ms, err, s.busy.Milliseconds())
		}
	}
	for _, c := range conns {
		c.Close()
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Commits are copied back into the database by the background
// checkpointer, not by SQLite's auto-checkpoint inside a commit (whose
// threshold is set past what this test writes): after the last commit the
// checkpointer reports the whole log copied back, and nobody else asked
// for a checkpoint.
func TestCheckpointerCopiesTheLogBackBesideTheWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sp.db")
	seen := make(chan checkpointResult, 256)
	ctx := context.Background()
	s, err := Open(ctx, path, &Options{checkpointed: seen})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var auto int
	if err := s.DB().QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != autoCheckpointFrames {
		t.Fatalf("wal_autocheckpoint = %d (%v), want %d", auto, err, autoCheckpointFrames)
	}
	if err := s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE ballast (b BLOB)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const commits = 20 // 20 × 16 pages: well under autoCheckpointFrames
	for i := 0; i < commits; i++ {
		if err := s.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO ballast (b) VALUES (randomblob(65536))`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The last commit nudged the checkpointer: a checkpoint starts after
	// it, and with nothing written since, it copies the whole log back.
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case r := <-seen:
			if r.Log > 0 && r.Copied == r.Log && !r.Busy {
				if got := s.WriteStats().Checkpoints; got == 0 {
					t.Fatalf("WriteStats.Checkpoints = 0 after a reported checkpoint")
				}
				var n int
				if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM ballast`).Scan(&n); err != nil || n != commits {
					t.Fatalf("rows = %d (%v), want %d", n, err, commits)
				}
				return
			}
		case <-deadline.C:
			t.Fatal("no background checkpoint copied the whole log back within 30 s of the last commit")
		}
	}
}
