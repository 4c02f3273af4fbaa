// Package npmtest installs the pinned npm packages of e2e/ for tests that
// drive real clients and servers nobody here wrote (the TypeScript SDK, the
// MCP Inspector, server-filesystem). Several test packages may need them at
// once (go test ./... runs packages in parallel), so the install holds a
// file lock; a missing Node or npm fails the test with how to install them,
// it never skips.
package npmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Help says how to get Node and npm.
const Help = `the end-to-end tests need Node.js 20 (or newer) and npm on PATH.
Install them, for example:
  - Debian/Ubuntu: sudo apt-get install -y nodejs npm   (check: node --version prints v20 or later)
  - macOS: brew install node@20
  - any OS: Node 20 LTS from nodejs.org, or nvm: nvm install 20
then run: (cd e2e && npm ci)`

// Root is the repository root (this file is internal/npmtest/npmtest.go).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// Dir is the e2e/ directory.
func Dir() string { return filepath.Join(Root(), "e2e") }

// Bin is the path of an installed package binary, e.g. mcp-server-filesystem.
func Bin(name string) string { return filepath.Join(Dir(), "node_modules", ".bin", name) }

// Ensure makes sure e2e/node_modules holds the versions e2e/package.json
// pins, running npm ci (under a file lock) when it does not.
func Ensure(t testing.TB) {
	t.Helper()
	if reason := stale(); reason == "" {
		return
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found on PATH: %v\n%s", tool, err, Help)
		}
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "sessionplane-npm-ci.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	reason := stale() // another package may have installed meanwhile
	if reason == "" {
		return
	}
	start := time.Now()
	Progress(t, "e2e/node_modules: %s: running npm ci in e2e/ (about 100 s the first time; later runs reuse it)", reason)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a line every 20 s, so a quiet terminal is not taken for a hang
		defer wg.Done()
		tick := time.NewTicker(20 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				Progress(t, "npm ci still running (%s)", time.Since(start).Round(time.Second))
			}
		}
	}()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = Dir()
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("npm ci in e2e/: %v\n%s\n%s", err, out, Help)
	}
	Progress(t, "npm ci done in %s", time.Since(start).Round(time.Second))
	if reason := stale(); reason != "" {
		t.Fatalf("after npm ci: %s", reason)
	}
}

// stale says why node_modules does not match package.json ("" = it does).
func stale() string {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile(filepath.Join(Dir(), "package.json"))
	if err != nil {
		return err.Error()
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return "e2e/package.json: " + err.Error()
	}
	for name, want := range pkg.Dependencies {
		var got struct {
			Version string `json:"version"`
		}
		b, err := os.ReadFile(filepath.Join(Dir(), "node_modules", filepath.FromSlash(name), "package.json"))
		if err == nil {
			err = json.Unmarshal(b, &got)
		}
		switch {
		case err != nil:
			return name + " is not installed"
		case got.Version != want:
			return fmt.Sprintf("%s is %s, e2e/package.json pins %s", name, got.Version, want)
		}
	}
	for _, bin := range []string{"mcp-inspector", "mcp-server-filesystem"} {
		if _, err := os.Stat(Bin(bin)); err != nil {
			return "node_modules/.bin/" + bin + " is missing"
		}
	}
	return ""
}

// Progress reports what a slow step is doing where the person running the
// tests sees it at once: go test ./... holds a package's output until the
// package is done, so besides the test log the line goes to the
// controlling terminal, when there is one (not in CI).
func Progress(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.Log(msg)
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(tty, "sessionplane tests: "+msg)
		tty.Close()
	}
}
