//go:build unix

package downstream

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/npmtest"
	"github.com/sessionplane/sessionplane/runtime/config"
)

// fsServerEnv names the mcp-server-filesystem binary to use instead of the e2e one.
const fsServerEnv = "SESSIONPLANE_FS_SERVER"

// fsServer finds mcp-server-filesystem (@modelcontextprotocol/server-filesystem, pinned in
// e2e/package.json): $SESSIONPLANE_FS_SERVER, else e2e/node_modules/.bin. Missing, the
// test fails: this is the check against a server we did not write.
func fsServer(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(fsServerEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", fsServerEnv, p, err)
		}
		return p
	}
	npmtest.Ensure(t) // installs the pinned e2e/ packages when missing
	p := npmtest.Bin("mcp-server-filesystem")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run (cd e2e && npm ci), or set %s to an mcp-server-filesystem binary", p, fsServerEnv)
	}
	return p
}

func TestRealFilesystemServer(t *testing.T) {
	bin := fsServer(t)
	dir := t.TempDir()
	const content = "hello from sessionplane\nsecond line\n"
	file := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	log := newLogSink()
	m := (&fake{log: log}).manager(t, Options{}, config.MCPServer{Name: "fs", Command: bin, Args: []string{dir}})

	tools, err := m.Tools(context.Background())
	if err != nil {
		t.Fatalf("Tools: %v\nlog:\n%s", err, log.String())
	}
	byName := map[string]Tool{}
	for _, tool := range tools {
		byName[tool.Qualified] = tool
	}
	for name, readOnly := range map[string]bool{"fs__list_directory": true, "fs__read_text_file": true, "fs__write_file": false} {
		tool, ok := byName[name]
		if !ok {
			t.Fatalf("no %s among %d tools", name, len(tools))
		}
		if tool.ReadOnly != readOnly || len(tool.InputSchema) == 0 || tool.Description == "" {
			t.Errorf("%s = %+v; want ReadOnly %v, a schema and a description", name, tool, readOnly)
		}
	}

	args := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	listing, isError, err := m.Call(context.Background(), "fs__list_directory", args(map[string]string{"path": dir}))
	if err != nil || isError || !strings.Contains(listing, "[FILE] hello.txt") {
		t.Errorf("list_directory = %q, isError %v, err %v", listing, isError, err)
	}
	text, isError, err := m.Call(context.Background(), "fs__read_text_file", args(map[string]string{"path": file}))
	if err != nil || isError || strings.TrimRight(text, "\n") != strings.TrimRight(content, "\n") {
		t.Errorf("read_text_file = %q, isError %v, err %v; want %q", text, isError, err, content)
	}
	// A refusal by the server is a tool result with isError, not a transport error.
	outside := filepath.Join(t.TempDir(), "outside.txt")
	text, isError, err = m.Call(context.Background(), "fs__read_text_file", args(map[string]string{"path": outside}))
	if err != nil || !isError || !strings.Contains(text, "denied") {
		t.Errorf("read outside the allowed directory = %q, isError %v, err %v; want an isError refusal", text, isError, err)
	}

	pid := m.servers["fs"].conn.pid()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("server process %d still exists after Close", pid)
	}
}
