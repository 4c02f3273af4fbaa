package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the binary buildBinary built (about 20 MB per run) once
// every test of the package is done with it.
//
// Run with $SESSIONPLANE_TEST_HTTP_BRIDGE set, the test binary is the
// multi-host test's HTTP client process instead (httpbridge_test.go).
func TestMain(m *testing.M) {
	if code, ok := bridgeMode(); ok {
		os.Exit(code)
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
