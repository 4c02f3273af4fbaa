package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// buildBinary builds the sessionplane binary once per test run.
func buildBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sessionplane-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "sessionplane")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// stdioProc is a running server with JSON-RPC over its stdin/stdout.
type stdioProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *bytes.Buffer
	done   chan error
	exited chan struct{} // closed once the process was reaped (stderr is then safe to read)
}

func startServer(t *testing.T, args ...string) *stdioProc {
	t.Helper()
	cmd := exec.Command(buildBinary(t), args...)
	cmd.Env = append(os.Environ(), "SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME="+t.TempDir())
	return startProc(t, cmd)
}

// startProc starts cmd (a server, perhaps behind a wrapper that execs it)
// with JSON-RPC over its stdin/stdout; it is killed when the test ends.
func startProc(t *testing.T, cmd *exec.Cmd) *stdioProc {
	t.Helper()
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	p := &stdioProc{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 100), stderr: &bytes.Buffer{}, done: make(chan error, 1), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() {
		p.done <- cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return p
}

func (p *stdioProc) send(msg string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, msg+"\n"); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next stdout line, which must be one JSON-RPC 2.0 message.
func (p *stdioProc) next() map[string]any {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			var exit error
			select {
			case exit = <-p.done:
			case <-time.After(5 * time.Second):
			}
			p.t.Fatalf("stdout closed (exit: %v); stderr:\n%s", exit, p.stderr)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["jsonrpc"] != "2.0" {
			p.t.Fatalf("stdout line is not JSON-RPC: %q", line)
		}
		return m
	case <-time.After(20 * time.Second):
		p.t.Fatalf("no response; stderr:\n%s", p.stderr)
	}
	return nil
}

// response waits for the response with that id, skipping notifications.
func (p *stdioProc) response(id int) map[string]any {
	p.t.Helper()
	for {
		m := p.next()
		if v, ok := m["id"].(float64); ok && int(v) == id {
			return m
		}
	}
}

// responses collects the responses with ids from..to, in any order.
func (p *stdioProc) responses(from, to int) map[int]map[string]any {
	p.t.Helper()
	out := map[int]map[string]any{}
	for len(out) < to-from+1 {
		m := p.next()
		if v, ok := m["id"].(float64); ok && int(v) >= from && int(v) <= to {
			out[int(v)] = m
		}
	}
	return out
}

func (p *stdioProc) wait() int {
	p.t.Helper()
	select {
	case err := <-p.done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			p.t.Fatal(err)
		}
		return 0
	case <-time.After(20 * time.Second):
		p.t.Fatalf("server did not exit; stderr:\n%s", p.stderr)
	}
	return -1
}

const initMsg = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"stdio-test","version":"1"}}}`

func TestStdioOnlyJSONRPCAndCleanEOF(t *testing.T) {
	t.Parallel()
	db := testdb.DSN(t, "sp.db")
	p := startServer(t, "--db", db, "--log-level", "debug")
	p.send(initMsg)
	init := p.response(1)
	result := init["result"].(map[string]any)
	if result["instructions"] == "" || result["serverInfo"].(map[string]any)["name"] != "sessionplane" {
		t.Fatalf("initialize: %v", init)
	}
	p.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	p.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	tools := p.response(2)["result"].(map[string]any)["tools"].([]any)
	if len(tools) != 19 {
		t.Fatalf("tools/list: %d tools", len(tools))
	}
	p.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sessions_list","arguments":{"limit":5}}}`)
	call := p.response(3)["result"].(map[string]any)
	if call["isError"] == true || call["structuredContent"] == nil {
		t.Fatalf("tools/call: %v", call)
	}
	p.send(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"sessions_history","arguments":{"key":"agent:main:absent"}}}`)
	bad := p.response(4)["result"].(map[string]any)
	if bad["isError"] != true {
		t.Fatalf("not-found: %v", bad)
	}
	p.stdin.Close() // EOF: clean shutdown
	// Any further stdout line must still be JSON-RPC.
	for line := range p.lines {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			t.Fatalf("non-JSON on stdout: %q", line)
		}
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d after EOF; stderr:\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "sessionplane starting") {
		t.Fatalf("logs did not go to stderr: %q", p.stderr)
	}
	// The calls were committed to the client's transcript.
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sess, err := st.GetSession(context.Background(), "agent:main:main")
	if err != nil || sess.MessageCount != 4 {
		t.Fatalf("client transcript after exit: %+v %v", sess, err)
	}
}

func TestStdioSIGTERMExitsZero(t *testing.T) {
	t.Parallel()
	p := startServer(t, "--db", testdb.DSN(t, "sp.db"))
	p.send(initMsg)
	p.response(1)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; stderr:\n%s", code, p.stderr)
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[mcp]\nagent = \"main\"\nagnet = 1\n"), 0o600)
	noScript := filepath.Join(dir, "noscript.toml")
	os.WriteFile(noScript, []byte("[providers.demo]\nkind = \"scripted\"\nscript = \"missing.json\"\n"), 0o600)
	badScript := filepath.Join(dir, "badscript.toml")
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"conversations": [{"turns": [{"txt": "typo"}]}]}`), 0o600)
	os.WriteFile(badScript, []byte("[providers.demo]\nkind = \"scripted\"\nscript = \"bad.json\"\n"), 0o600)
	db := testdb.DSN(t, "sp.db") // the cases that get as far as opening it, on the suite's backend
	unsetKey := filepath.Join(dir, "unsetkey.toml")
	os.WriteFile(unsetKey, []byte("[providers.claude]\nkind = \"anthropic\"\napi_key_env = \"SESSIONPLANE_TEST_UNSET_KEY\"\n"), 0o600)
	pgPass := filepath.Join(dir, "pgpass.toml")
	os.WriteFile(pgPass, []byte("[store]\nurl = \"postgres://u:s3cret@127.0.0.1:1/db?sslmode=disable\"\n"), 0o600)
	cases := []struct {
		args       []string
		code       int
		stdout     string
		stderr     string
		stdoutJSON bool
	}{
		{[]string{"--version"}, 0, "sessionplane ", "", false},
		{[]string{"--help"}, 0, "", "Usage:", false},
		{[]string{"config", "check", "--config", "testdata/example.toml"}, 0, "", "config OK", true},
		{[]string{"config", "check"}, 0, "", "built-in defaults", true},
		{[]string{"config", "check", "--config", bad}, 2, "", "mcp.agnet: unknown key", false},
		{[]string{"config", "check", "--config", noScript}, 2, "", "providers.demo.script", false},
		{[]string{"config", "check", "--config", badScript}, 2, "", "txt", false},
		{[]string{"config", "check", "--config", pgPass}, 0, "postgres://u:xxxxx@127.0.0.1:1/db", "config OK", true}, // never the password
		{[]string{"config", "check", "--config", unsetKey}, 0, "", "warning: providers.claude.api_key_env: $SESSIONPLANE_TEST_UNSET_KEY is not set", true},
		{[]string{"--db", dir}, 1, "", "is a directory", false},
		{[]string{"--config", bad}, 2, "", "(line 3)", false},
		{[]string{"--config", filepath.Join(dir, "missing.toml")}, 2, "", "cannot read the file", false},
		{[]string{"--preset", "ghost", "--db", db}, 2, "", "--preset \"ghost\"", false},
		{[]string{"--log-level", "loud"}, 2, "", "--log-level", false},
		{[]string{"--http", "0.0.0.0:0", "--db", db}, 1, "", "non-loopback address is served only with [[mcp.http.tokens]]", false},
		{[]string{"--http", "0.0.0.0:0", "--http-no-auth", "--db", db}, 1, "", "--http-no-auth is accepted on loopback addresses only", false},
		{[]string{"--http-no-auth", "--db", db}, 2, "", "--http-no-auth needs --http", false},
		{[]string{"--session", "agent:other:x", "--db", db}, 2, "", "agent:main:<name>", false},
		{[]string{"--http", "nonsense", "--db", db}, 2, "", "use host:port", false}, // a bad flag: before anything opens
		{[]string{"db"}, 2, "", "db check", false},
		{[]string{"stray"}, 2, "", "unexpected argument", false},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(strings.Join(c.args, " "), db, "$DB"), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, c.args...)
			cmd.Env = append(os.Environ(), "SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), c.stdout) || !strings.Contains(stderr.String(), c.stderr) {
				t.Fatalf("stdout %q / stderr %q; want %q / %q", stdout.String(), stderr.String(), c.stdout, c.stderr)
			}
			if c.stdoutJSON && !json.Valid(stdout.Bytes()) {
				t.Fatalf("config check stdout is not JSON: %s", stdout.String())
			}
		})
	}
}

// startHTTP starts the binary with --http on loopback and returns its URL
// and what it printed to stderr before serving.
func startHTTP(t *testing.T, env []string, args ...string) (url string, printed []string) {
	t.Helper()
	cmd := exec.Command(buildBinary(t), append([]string{"--http", "127.0.0.1:0", "--db", testdb.DSN(t, "sp.db")}, args...)...)
	cmd.Env = append(append(os.Environ(), "SESSIONPLANE_CONFIG=", "SESSIONPLANE_HTTP_TOKEN=", "XDG_CONFIG_HOME="+t.TempDir()), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		printed = append(printed, sc.Text())
		if i := strings.Index(sc.Text(), "url=http://"); i >= 0 {
			url = strings.Fields(sc.Text()[i+4:])[0]
		}
		// A generated token is printed after the url line, ending with the
		// Claude Code snippet.
		if strings.Contains(sc.Text(), "--header") || (url != "" && !strings.Contains(sc.Text(), "auth=generated") && !strings.Contains(strings.Join(printed, "\n"), "auth=generated")) {
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	if url == "" {
		t.Fatalf("no url logged: %s", strings.Join(printed, "\n"))
	}
	return url, printed
}

// rawPost is what curl sends: an initialize with the given Authorization
// header ("" = none).
func rawPost(t *testing.T, url, auth string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// The same server over Streamable HTTP on loopback, authenticated by
// default: with no token configured one is generated and printed once,
// with a client snippet; requests without it, or with another, get 401.
func TestHTTPTransport(t *testing.T) {
	url, printed := startHTTP(t, nil)
	token := ""
	for _, l := range printed {
		if f := strings.TrimSpace(l); len(f) == 64 && strings.Trim(f, "0123456789abcdef") == "" {
			token = f
		}
	}
	all := strings.Join(printed, "\n")
	t.Logf("stderr before serving:\n%s", all)
	if token == "" || strings.Count(all, token) != 3 || !strings.Contains(all, `"Authorization": "Bearer `+token+`"`) {
		t.Fatalf("no generated token with a client snippet on stderr:\n%s", all)
	}
	for _, auth := range []string{"", "Bearer wrong-token", "Basic " + token} {
		code, h := rawPost(t, url, auth)
		if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("Authorization %q: %d, WWW-Authenticate %q; want 401 with a Bearer challenge", auth, code, h.Get("WWW-Authenticate"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := httpClient(t, ctx, url, token)
	res, err := c.ListTools(ctx, listToolsReq())
	if err != nil || len(res.Tools) != 19 {
		t.Fatalf("tools/list over HTTP: %v", err)
	}
}

// $SESSIONPLANE_HTTP_TOKEN is the token of the principal the flags
// describe, and no token is printed.
func TestHTTPTokenFromEnvironment(t *testing.T) {
	url, printed := startHTTP(t, []string{"SESSIONPLANE_HTTP_TOKEN=from-env-0123456789"})
	if all := strings.Join(printed, "\n"); strings.Contains(all, "generated") {
		t.Fatalf("a token was generated although $SESSIONPLANE_HTTP_TOKEN is set:\n%s", all)
	}
	if code, _ := rawPost(t, url, "Bearer from-env-0123456789"); code != http.StatusOK {
		t.Fatalf("the environment's token: %d, want 200", code)
	}
	if code, _ := rawPost(t, url, "Bearer from-env-012345678"); code != http.StatusUnauthorized {
		t.Fatalf("a prefix of the token: %d, want 401", code)
	}
}

// BenchmarkStartToInitialize: fork-exec of the binary to the initialize
// response over stdio (a fresh database each time: includes migrations).
func BenchmarkStartToInitialize(b *testing.B) {
	bin := buildBinary(b)
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bin, "--db", filepath.Join(dir, fmt.Sprintf("s%d.db", i)), "--log-level", "error")
		cmd.Env = append(os.Environ(), "SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME="+dir)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		io.WriteString(stdin, initMsg+"\n")
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.Contains(line, `"id":1`) {
			b.Fatalf("initialize: %q %v", line, err)
		}
		b.StopTimer()
		stdin.Close()
		cmd.Wait()
		b.StartTimer()
	}
}

// scriptedConfig writes script (a scripted-provider script) and a config
// that runs every agent on it into dir; extra TOML is appended. It returns
// the config's path.
func scriptedConfig(t testing.TB, dir, script, extra string) string {
	t.Helper()
	sp := filepath.Join(dir, "script.json")
	if err := os.WriteFile(sp, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[providers.demo]
kind = "scripted"
script = %q
[[models]]
id = "demo/scripted"
provider = "demo"
cost = { input = 3.0, output = 15.0 }
[agents.defaults]
model = "demo/scripted"
`, sp)+extra), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// spawnConfigFiles writes a config with a scripted provider into dir.
func spawnConfigFiles(t *testing.T, dir string) string {
	t.Helper()
	return scriptedConfig(t, dir, `{"conversations": [
		{"match": "slow", "turns": [{"delay_ms": 600000, "text": "never"}]},
		{"turns": [{"text": "fine"}]}]}`, "")
}

func callMsg(id int, tool, args string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, tool, args)
}

// A real server process is killed with SIGKILL while a child runs, then
// restarted on the same file: the run ends unknown, it is announced exactly
// once, and the child's transcript is intact.
func TestKill9RecoversRunAsUnknown(t *testing.T) {
	dir := t.TempDir()
	db := testdb.DSN(t, "sp.db")
	cfg := spawnConfigFiles(t, dir)
	p := startServer(t, "--db", db, "--config", cfg)
	p.send(initMsg)
	p.response(1)
	p.send(callMsg(2, "sessions_spawn", `{"task":"slow analysis","label":"victim"}`))
	res := p.response(2)["result"].(map[string]any)["structuredContent"].(map[string]any)
	runID, child := res["runId"].(string), res["childSessionKey"].(string)
	if res["status"] != "accepted" {
		t.Fatalf("spawn: %v", res)
	}
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := st.GetRun(context.Background(), runID)
		if err == nil && r.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run never started: %+v %v", r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Kill() // SIGKILL: no shutdown code runs
	p.wait()

	q := startServer(t, "--db", db, "--config", cfg)
	q.send(initMsg)
	q.response(1)
	q.send(callMsg(2, "spawn_status", fmt.Sprintf(`{"task_id":%q}`, runID)))
	resp := q.response(2)["result"].(map[string]any)
	status := resp["structuredContent"].(map[string]any)
	if status["status"] != "unknown" || !strings.Contains(status["note"].(string), "stopped before it finished") {
		t.Fatalf("after restart: %v", status)
	}
	announced := 0
	countIn := func(r map[string]any) { // prefixes: every content item before the tool's own (last) one
		items := r["content"].([]any)
		for _, c := range items[:len(items)-1] {
			announced += strings.Count(c.(map[string]any)["text"].(string), "[announce]")
		}
	}
	// spawn_status shows the announce itself, so it is not prefixed again.
	for _, c := range resp["content"].([]any) {
		announced += strings.Count(c.(map[string]any)["text"].(string), "[announce]")
	}
	for id := 3; id < 6; id++ {
		q.send(callMsg(id, "sessions_list", `{}`))
		countIn(q.response(id)["result"].(map[string]any))
	}
	if announced != 1 {
		t.Fatalf("announce delivered %d times, want exactly once", announced)
	}
	msgs, err := st.Transcript(context.Background(), child)
	if err != nil || len(msgs) < 1 || msgs[0].Content.Text != "slow analysis" {
		t.Fatalf("child transcript: %+v %v", msgs, err)
	}
	if st.Backend() == "sqlite" {
		checkSQLiteFile(t, st)
	}
	q.stdin.Close()
	if code := q.wait(); code != 0 {
		t.Fatalf("restarted server exit %d: %s", code, q.stderr)
	}
}

// Two real server processes on one database. A message to the other
// process's client session is delivered and that client is notified; a
// send to a session busy with a turn in the other process queues behind it
// and is picked up as soon as that turn ends.
func TestTwoProcessesDeliveryAndPickup(t *testing.T) {
	dir := t.TempDir()
	db := testdb.DSN(t, "sp.db")
	cfg := scriptedConfig(t, dir, `{"conversations": [
		{"match": "first", "turns": [{"delay_ms": 1610, "text": "first done"}, {"text": "second done"}]}]}`, "")
	a := startServer(t, "--db", db, "--config", cfg, "--agent", "main")
	b := startServer(t, "--db", db, "--config", cfg, "--agent", "ops")
	for _, p := range []*stdioProc{a, b} {
		p.send(initMsg)
		p.response(1)
		p.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	}
	// A delivers to B's client session; B's client hears of it.
	a.send(callMsg(2, "sessions_send", `{"key":"agent:ops:main","message":"deploy finished"}`))
	if st := a.response(2)["result"].(map[string]any)["structuredContent"].(map[string]any)["status"]; st != "delivered" {
		t.Fatalf("delivery status %v", st)
	}
	deadline := time.Now().Add(15 * time.Second)
	heard := false
	for !heard && time.Now().Before(deadline) {
		m := b.next()
		if m["method"] == "notifications/message" && strings.Contains(fmt.Sprint(m["params"]), "agent:main:main") {
			heard = true
		}
	}
	if !heard {
		t.Fatal("B's client was not notified of the message delivered by A")
	}
	// B starts a slow turn on a worker session; A's send to it queues and
	// runs when B's turn ends.
	b.send(callMsg(3, "sessions_send", `{"key":"agent:main:worker","message":"first job","timeoutSeconds":0}`))
	b.response(3)
	a.send(callMsg(4, "sessions_send", `{"key":"agent:main:worker","message":"second job","timeoutSeconds":60}`))
	res := a.response(4)["result"].(map[string]any)["structuredContent"].(map[string]any)
	if res["status"] != "ok" || res["reply"] != "second done" || res["queued"] != true {
		t.Fatalf("queued cross-process send: %v", res)
	}
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, _ := st.ListRuns(context.Background(), store.RunFilter{Kind: "send", States: []string{"ok"}})
	var first, second *store.Run
	for _, r := range runs {
		switch r.Task {
		case "first job":
			first = r
		case "second job":
			second = r
		}
	}
	if first == nil || second == nil || first.OwnerInstance == second.OwnerInstance || second.StartedAt < first.EndedAt {
		t.Fatalf("turns: %+v / %+v", first, second)
	}
	t.Logf("cross-process pickup latency: %d ms (turn ended in B → queued turn started in A)", second.StartedAt-first.EndedAt)
}

// Two real server processes claim the same tasks at the same moment: each
// task has exactly one winner.
func TestTwoProcessesClaimOnce(t *testing.T) {
	db := testdb.DSN(t, "sp.db")
	procs := []*stdioProc{startServer(t, "--db", db, "--agent", "main"), startServer(t, "--db", db, "--agent", "ops")}
	for _, p := range procs {
		p.send(initMsg)
		p.response(1)
	}
	const tasks = 10
	for i := 1; i <= tasks; i++ {
		procs[0].send(callMsg(100+i, "task_list", fmt.Sprintf(`{"action":"create","list":"race","title":"task %d"}`, i)))
		procs[0].response(100 + i)
	}
	// Both send every claim before reading any answer: the claims race.
	for _, p := range procs {
		for i := 1; i <= tasks; i++ {
			p.send(callMsg(200+i, "task_list", fmt.Sprintf(`{"action":"claim","id":%d}`, i)))
		}
	}
	wins := map[int]int{}
	for pi, p := range procs {
		got := p.responses(201, 200+tasks)
		for i := 1; i <= tasks; i++ {
			res := got[200+i]["result"].(map[string]any)
			if res["isError"] != true {
				wins[i]++
			} else if txt := fmt.Sprint(res["content"]); !strings.Contains(txt, "already claimed") {
				t.Fatalf("process %d, task %d: unexpected error %s", pi, i, txt)
			}
		}
	}
	for i := 1; i <= tasks; i++ {
		if wins[i] != 1 {
			t.Fatalf("task %d claimed %d times", i, wins[i])
		}
	}
}

// The dashboard is served under /ui/ of --http behind the same tokens: each
// token sees what its principal may read, and nothing without one.
func TestHTTPServesTheDashboardPerPrincipal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tokens.toml")
	if err := os.WriteFile(cfg, []byte(`
[agents.presets.observer]
tools.allow = ["sessions_list", "sessions_history"]
sessions.key_prefix = "agent:research:"
[[mcp.http.tokens]]
name = "me"
token_env = "TOKEN_ME"
agent = "main"
[[mcp.http.tokens]]
name = "observer"
token_env = "TOKEN_OBS"
agent = "main"
preset = "observer"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ := startHTTP(t, []string{"TOKEN_ME=me-token-0123456789abcdef", "TOKEN_OBS=observer-token-0123456789"}, "--config", cfg)
	// The unrestricted principal connects, so its own session exists.
	if code, _ := rawPost(t, url, "Bearer me-token-0123456789abcdef"); code != http.StatusOK {
		t.Fatalf("initialize as me: %d", code)
	}
	base := strings.TrimSuffix(url, "/mcp") + "/ui/"
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("api/sessions", ""); code != http.StatusUnauthorized {
		t.Fatalf("dashboard without a token: %d, want 401", code)
	}
	if code, _ := get("api/sessions", "wrong-token-0123456789"); code != http.StatusUnauthorized {
		t.Fatalf("dashboard with a wrong token: %d, want 401", code)
	}
	code, body := get("api/sessions", "me-token-0123456789abcdef")
	if code != http.StatusOK || !strings.Contains(body, "agent:main:main") {
		t.Fatalf("dashboard as me: %d %s", code, body)
	}
	code, body = get("api/sessions", "observer-token-0123456789")
	if code != http.StatusOK || strings.Contains(body, "agent:main:main") {
		t.Fatalf("the observer's dashboard shows the other principal's session: %d %s", code, body)
	}
	if code, body := get("api/me", "observer-token-0123456789"); code != http.StatusOK || !strings.Contains(body, "agent:main:observer") {
		t.Fatalf("the observer's dashboard identity: %d %s", code, body)
	}
}
