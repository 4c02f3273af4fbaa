package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// What was seen 3, over real stdio: `printf '<initialize>\n<initialized>\n
// <create>…\n' | sessionplane` answered the creates with "context canceled".
// Every request piped before EOF is now answered, stored, and the exit is 0.
func TestStdioPipeEOFDrain(t *testing.T) {
	db := testdb.DSN(t, "sp.db")
	var in strings.Builder
	in.WriteString(initMsg + "\n")
	in.WriteString(`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n")
	creates := 200
	if longRun() {
		creates = 5000
	}
	for i := 0; i < creates; i++ {
		in.WriteString(callMsg(i+2, "task_list", fmt.Sprintf(`{"action":"create","list":"piped","title":"task %d"}`, i)) + "\n")
	}
	cmd := exec.Command(buildBinary(t), "--db", db)
	cmd.Env = append(os.Environ(), "SESSIONPLANE_CONFIG=", "XDG_CONFIG_HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(in.String()) // a pipe, closed after the last line
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("exit: %v; stderr:\n%s", err, stderr.String())
	}
	ok := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var m struct {
			ID     *int            `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("stdout line is not JSON: %q", sc.Text())
		}
		if m.ID == nil || *m.ID < 2 {
			continue
		}
		if m.Error != nil || bytes.Contains(m.Result, []byte(`"isError":true`)) {
			t.Fatalf("request %d: %s", *m.ID, sc.Bytes())
		}
		ok++
	}
	if ok != creates {
		t.Fatalf("%d of %d piped creates answered ok; stderr:\n%s", ok, creates, stderr.String())
	}
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var n int
	if err := st.DB().QueryRow(`SELECT count(*) FROM tasks`).Scan(&n); err != nil || n != creates {
		t.Fatalf("tasks stored = %d (%v), want %d", n, err, creates)
	}
}

// SIGTERM with a request in flight: it is answered before the exit (0).
// The spawn's scripted turn takes 10 minutes, so the answer comes when the
// drain ([mcp] drain_seconds = 1 here) is over and the call is cancelled.
func TestStdioSIGTERMAnswersInFlight(t *testing.T) {
	dir := t.TempDir()
	cfg := scriptedConfig(t, dir, `{"conversations": [{"turns": [{"delay_ms": 600000, "text": "never"}]}]}`, "[mcp]\ndrain_seconds = 1\n")
	p := startServer(t, "--db", testdb.DSN(t, "sp.db"), "--config", cfg)
	p.send(initMsg)
	p.response(1)
	p.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"spawn_agent","arguments":{"task":"slow work"},"_meta":{"progressToken":"p2"}}}`)
	for m := p.next(); m["method"] != "notifications/progress"; m = p.next() {
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if res := p.response(2); res["result"] == nil {
		t.Fatalf("in-flight spawn_agent after SIGTERM: %v", res)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}
}
