//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/npmtest"
	"github.com/sessionplane/sessionplane/internal/testdb"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// TestRealClients drives the real sessionplane binary with MCP clients nobody
// in this repository wrote: the official TypeScript SDK (e2e/sdk_client.mjs)
// and the MCP Inspector CLI (e2e/inspector.sh), both pinned in
// e2e/package-lock.json. It needs Node.js 20+ and npm; it fails (never skips)
// when they are missing, and runs `npm ci` in e2e/ when e2e/node_modules is
// missing or does not match e2e/package.json.
func TestRealClients(t *testing.T) {
	t.Parallel() // after the serial tests (crash, soak), beside the other parallel ones
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	e2eDir := filepath.Join(root, "e2e")
	e2eRequireNode(t)
	e2eEnsureNodeModules(t, e2eDir)

	bin := buildBinary(t) // the one binary every test of this package runs

	// The clients start the server with a HOME of their own, so neither
	// sessionplane's nor the Inspector's per-user files are read or written.
	env := e2eHermeticEnv(t)

	// Each client runs its own server on its own database: the subtests
	// are independent and mostly wait on node, so they run side by side.
	t.Run("sdk", func(t *testing.T) {
		t.Parallel()
		db := testdb.DSN(t, "sdk.db")
		out := e2eRun(t, root, env, 3*time.Minute, "node", filepath.Join("e2e", "sdk_client.mjs"), bin, db)
		e2eRequireSummary(t, out, "sdk client")
	})
	t.Run("flows", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		scripted := scriptedConfig(t, dir, `{"conversations": [
			{"match": "release notes", "turns": [{"text": "Release notes: faster search, durable announces.", "usage": {"input_tokens": 800, "output_tokens": 400}}]},
			{"match": "JWT", "turns": [{"text": "Noted."}, {"text": "JWT middleware implemented."}]},
			{"turns": [{"text": "done"}]}]}`, "")
		observer := filepath.Join(dir, "observer.toml")
		os.WriteFile(observer, []byte(`
[mcp]
preset = "observer"
[agents.presets.observer]
tools.allow = ["toolset.starter-read", "sessions_search"]
sessions.key_prefix = "agent:research:"
sessions.can_send = false
`), 0o600)
		// spawn-demo is the README's command: the demo config, any answer.
		// http: --http with a token, driven by the SDK's Streamable HTTP client.
		for _, f := range []struct{ name, flow, config, expect string }{{"observer", "observer", observer, ""},
			{"spawn", "spawn", scripted, "Release notes: faster search, durable announces."},
			{"spawn-demo", "spawn", filepath.Join("testdata", "demo.toml"), ""}, {"coordinator", "coordinator", scripted, ""},
			{"http", "http", scripted, ""}} {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				db := testdb.DSN(t, f.name+".db")
				if f.flow == "observer" {
					st, err := store.Open(context.Background(), db, nil)
					if err != nil {
						t.Fatal(err)
					}
					st.EnsureSession(context.Background(), store.Session{Key: "agent:main:notes"})
					st.EnsureSession(context.Background(), store.Session{Key: "agent:research:papers"})
					st.Close()
				}
				env := env
				if f.expect != "" {
					env = append(env[:len(env):len(env)], "SDK_FLOWS_EXPECT_TEXT="+f.expect)
				}
				out := e2eRun(t, root, env, 3*time.Minute, "node", filepath.Join("e2e", "sdk_flows.mjs"), f.flow, bin, db, "--config", f.config)
				e2eRequireSummary(t, out, "sdk flows "+f.flow)
			})
		}
	})
	t.Run("inspector", func(t *testing.T) {
		t.Parallel()
		db := testdb.DSN(t, "inspector.db")
		out := e2eRun(t, root, env, 3*time.Minute, "bash", filepath.Join("e2e", "inspector.sh"), bin, db)
		e2eRequireSummary(t, out, "inspector cli")
	})
}

const e2eInstallHelp = `the real-client end-to-end tests need Node.js 20 (or newer) and npm on PATH.
Install them, for example:
  - Debian/Ubuntu: sudo apt-get install -y nodejs npm   (check: node --version prints v20 or later;
    otherwise use the NodeSource packages: https://github.com/nodesource/distributions)
  - macOS: brew install node@20
  - any OS: https://nodejs.org/en/download (Node 20 LTS) or nvm: nvm install 20
then run: (cd e2e && npm ci)`

// e2eRequireNode fails the test unless node ≥ 20 and npm are installed.
func e2eRequireNode(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found on PATH: %v\n%s", tool, err, e2eInstallHelp)
		}
	}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v\n%s", err, e2eInstallHelp)
	}
	v := strings.TrimSpace(string(out))
	m := regexp.MustCompile(`^v(\d+)\.`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("node --version printed %q, want v20 or later\n%s", v, e2eInstallHelp)
	}
	if major, _ := strconv.Atoi(m[1]); major < 20 {
		t.Fatalf("node is %s, want v20 or later\n%s", v, e2eInstallHelp)
	}
}

// e2eEnsureNodeModules runs `npm ci` in e2e/ when node_modules is missing or
// holds other versions than e2e/package.json pins.
func e2eEnsureNodeModules(t *testing.T, dir string) {
	t.Helper()
	npmtest.Ensure(t) // npm ci under a lock shared with the other test packages
}

// e2eHermeticEnv is the environment for the client scripts: the user's, with
// HOME and the XDG directories in a temporary directory and the
// SESSIONPLANE_* variables removed.
func e2eHermeticEnv(t *testing.T) []string {
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME", strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "SESSIONPLANE_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
		"XDG_STATE_HOME="+filepath.Join(home, ".local", "state"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"NO_COLOR=1",
	)
}

// e2eRun runs a command in dir with a bounded timeout, streams its stdout and
// stderr into t.Log line by line, fails the test on a non-zero exit and
// returns the combined output. On timeout the whole process group (the script,
// its clients and their sessionplane servers) is killed.
func e2eRun(t *testing.T, dir string, env []string, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - 15*time.Second; left < timeout {
			timeout = max(left, 10*time.Second)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	w := &e2eLogWriter{t: t}
	cmd.Stdout = w
	cmd.Stderr = w
	start := time.Now()
	err := cmd.Run()
	w.flush()
	cmdline := name + " " + strings.Join(args, " ")
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatalf("%s: timed out after %s (in %s)", cmdline, timeout, dir)
	}
	if err != nil {
		t.Fatalf("%s: %v after %s (in %s); its output is logged above", cmdline, err, time.Since(start).Round(time.Millisecond), dir)
	}
	return w.all.String()
}

// e2eRequireSummary checks the script's final "<name>: N passed, 0 failed"
// line, so a script that stops early with exit 0 cannot pass.
func e2eRequireSummary(t *testing.T, out, name string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (\d+) passed, (\d+) failed$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q summary line in the output", name+": N passed, M failed")
	}
	if m[1] == "0" || m[2] != "0" {
		t.Fatalf("summary: %s", m[0])
	}
}

// e2eLogWriter sends complete lines to t.Log and keeps a copy of everything.
type e2eLogWriter struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
	all bytes.Buffer
}

func (w *e2eLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.t.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *e2eLogWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.t.Log(string(w.buf))
		w.buf = nil
	}
}
