package store

import (
	"context"
	"path/filepath"
	"testing"
)

// Every pooled SQLite connection maps the file for reads (the pragma is in
// the DSN), and the SQLite build honours the size asked for.
func TestSQLiteReadsMapTheFile(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "sp.db"))
	ctx := context.Background()
	// Hold several connections at once so the pool opens more than one.
	var conns []interface{ Close() error }
	for i := 0; i < 3; i++ {
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var got int64
		if err := c.QueryRowContext(ctx, "PRAGMA mmap_size").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != mmapBytes {
			t.Fatalf("connection %d: mmap_size %d, want %d", i, got, mmapBytes)
		}
	}
	for _, c := range conns {
		c.Close()
	}
}
