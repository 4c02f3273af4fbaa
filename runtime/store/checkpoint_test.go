package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
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
