package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the binary buildBinary built (about 20 MB per run) once
// every test of the package is done with it.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
