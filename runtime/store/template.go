package store

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// A new SQLite database used to be made by applying every migration, the
// biggest part of a first start (a dozen files of DDL parsed and run, a
// table rebuilt, the schema re-read after each change). template/
// sqlite-empty.sqlite.gz is that database, made by the migrations and VACUUMed
// (schema_migrations' applied_at is 0 there: applied when the template was
// made): a new file is a copy of it. It is only a shortcut: Open still
// reads schema_migrations and applies whatever the template lacks, so a
// template older than the migrations is slower, never wrong.
// TestSQLiteTemplate fails when it is not what the migrations make today;
// `go test ./runtime/store -run TestSQLiteTemplate -update` rewrites it.
//
//go:embed template/sqlite-empty.sqlite.gz
var sqliteTemplate []byte

// createFromTemplate makes path a copy of the template when neither it
// nor a journal of it exists, and reports whether it did. The copy is
// written beside path under another name and linked into place, so
// another process never sees a partial file, and a file someone else
// created meanwhile is never replaced (created is then false). Any failure
// leaves path alone and answers false: Open then creates the file the
// ordinary way, which reports the problem by name.
func createFromTemplate(path string) (created bool) {
	for _, p := range []string{path, path + "-wal", path + "-journal"} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(sqliteTemplate))
	if err != nil {
		return false
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sessionplane-new-*") // 0600
	if err != nil {
		return false
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, zr)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false
	}
	return os.Link(tmp.Name(), path) == nil
}
