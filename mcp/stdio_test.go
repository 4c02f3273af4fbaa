package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// stdioPipe is a server served over in-memory pipes, spoken to in raw
// JSON-RPC lines.
type stdioPipe struct {
	t     *testing.T
	st    *store.Store
	in    *io.PipeWriter
	lines chan map[string]any
	done  chan struct{} // closed when ServeStdio returned (its error in err)
	err   error
}

func newStdioPipe(t *testing.T, toml string, providers map[string]provider.Provider) *stdioPipe {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, testdb.DSN(t, "sp.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Build(cfg, st, &BuildOptions{Version: "test", Providers: providers})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &stdioPipe{t: t, st: st, in: inW, lines: make(chan map[string]any, 1024), done: make(chan struct{})}
	go func() {
		p.err = srv.ServeStdio(ctx, inR, outW, 8)
		outW.Close()
		close(p.done)
	}()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("stdout line is not JSON: %q", sc.Text())
				continue
			}
			p.lines <- m
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		inW.Close()
		cancel()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Error("ServeStdio did not return")
		}
		outR.Close()
		<-readDone
		srv.Close()
		st.Close()
	})
	return p
}

func (p *stdioPipe) send(lines ...string) {
	p.t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(p.in, l+"\n"); err != nil {
			p.t.Fatal(err)
		}
	}
}

// response waits for the response with that id, skipping other messages.
func (p *stdioPipe) response(id float64) map[string]any {
	p.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("output closed before the response to %v", id)
			}
			if v, ok := m["id"].(float64); ok && v == id && m["method"] == nil {
				return m
			}
		case <-timeout:
			p.t.Fatalf("no response to %v", id)
		}
	}
}

// rest reads every message until the output closes (after ServeStdio returned).
func (p *stdioPipe) rest() []map[string]any {
	p.t.Helper()
	var out []map[string]any
	timeout := time.After(60 * time.Second)
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				return out
			}
			out = append(out, m)
		case <-timeout:
			p.t.Fatal("output did not close")
		}
	}
}

func errCode(m map[string]any) (float64, string) {
	e, ok := m["error"].(map[string]any)
	if !ok {
		return 0, ""
	}
	code, _ := e["code"].(float64)
	msg, _ := e["message"].(string)
	return code, msg
}

const pipeInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}`

func createTask(id int) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"task_list","arguments":{"action":"create","list":"drain","title":"task %d"}}}`, id, id)
}

// What was seen 3: the end of stdin cancelled requests already received
// (200 creates then EOF: 3 ok, 128 canceled, 69 unanswered). Every request
// received before EOF is now answered and its write is stored.
func TestStdioEOFDrainsEveryRequestReceived(t *testing.T) {
	p := newStdioPipe(t, "", nil)
	lines := []string{pipeInit, `{"jsonrpc":"2.0","method":"notifications/initialized"}`}
	for i := 2; i < 202; i++ {
		lines = append(lines, createTask(i))
	}
	go func() {
		for _, l := range lines {
			if _, err := io.WriteString(p.in, l+"\n"); err != nil {
				return
			}
		}
		p.in.Close() // EOF right behind the last request
	}()
	answered := map[int]bool{}
	for _, m := range p.rest() {
		id, ok := m["id"].(float64)
		if !ok || id < 2 {
			continue
		}
		res, _ := m["result"].(map[string]any)
		if res == nil || res["isError"] == true {
			t.Fatalf("request %v: %v", id, m)
		}
		answered[int(id)] = true
	}
	if len(answered) != 200 {
		t.Fatalf("answered %d of 200 creates", len(answered))
	}
	<-p.done
	if p.err != nil {
		t.Fatalf("ServeStdio: %v", p.err)
	}
	var n int
	if err := p.st.DB().QueryRow(`SELECT count(*) FROM tasks`).Scan(&n); err != nil || n != 200 {
		t.Fatalf("tasks stored = %d (%v), want 200", n, err)
	}
}

// What was seen 6: tools/call before initialize was executed. It is now a
// JSON-RPC error; ping is served; after initialize the same call works.
func TestStdioCallBeforeInitializeRefused(t *testing.T) {
	p := newStdioPipe(t, "", nil)
	p.send(createTask(5), `{"jsonrpc":"2.0","id":6,"method":"ping"}`)
	if code, msg := errCode(p.response(5)); code != codeInvalidRequest || !strings.Contains(msg, "before initialize") {
		t.Fatalf("call before initialize: %v %q", code, msg)
	}
	if m := p.response(6); m["result"] == nil {
		t.Fatalf("ping before initialize: %v", m)
	}
	p.send(pipeInit)
	p.response(1)
	p.send(createTask(7))
	if m := p.response(7); m["result"] == nil {
		t.Fatalf("call after initialize: %v", m)
	}
	var n int
	if err := p.st.DB().QueryRow(`SELECT count(*) FROM tasks`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("tasks = %d (%v), want only the one after initialize", n, err)
	}
}

// What was seen 6: duplicate in-flight request ids all ran; integers above
// 2^53 were rounded. Both are JSON-RPC errors now, and the first request
// with the id is still answered.
func TestStdioDuplicateInFlightIDAndInexactInteger(t *testing.T) {
	p := newStdioPipe(t, fmt.Sprintf(spawnConfig, ""), map[string]provider.Provider{"script": scripted(t)})
	p.send(pipeInit)
	p.response(1)
	// A blocking spawn_agent on a 60 s scripted turn stays in flight.
	p.send(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"spawn_agent","arguments":{"task":"slow work"}}}`)
	var n int
	waitFor(t, "the run to start", func() bool {
		return p.st.DB().QueryRow(`SELECT count(*) FROM runs WHERE state = 'running'`).Scan(&n) == nil && n == 1
	})
	p.send(createTask(9))
	if code, msg := errCode(p.response(9)); code != codeInvalidRequest || !strings.Contains(msg, "duplicate request id 9") {
		t.Fatalf("duplicate id: %v %q", code, msg)
	}
	p.send(`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"sessions_list","arguments":{"limit":9223372036854775807}}}`)
	if code, msg := errCode(p.response(10)); code != codeInvalidParams || !strings.Contains(msg, "9223372036854775807") || !strings.Contains(msg, "2^53") {
		t.Fatalf("inexact integer: %v %q", code, msg)
	}
	p.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}}`)
	if m := p.response(9); m["result"] == nil && m["error"] == nil {
		t.Fatalf("the first request 9 was not answered: %v", m)
	}
	if err := p.st.DB().QueryRow(`SELECT count(*) FROM tasks`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the duplicate ran: tasks = %d (%v)", n, err)
	}
}

// A line over [limits] call_bytes is refused by its id without being kept.
func TestStdioOversizedLineRefused(t *testing.T) {
	p := newStdioPipe(t, "[limits]\ncall_bytes = 1048576\n", nil)
	p.send(pipeInit)
	p.response(1)
	big := fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"task_list","arguments":{"action":"create","list":"l","title":"%s"}}}`, strings.Repeat("x", 2<<20))
	p.send(big)
	if code, msg := errCode(p.response(3)); code != codeInvalidRequest || !strings.Contains(msg, "[limits] call_bytes") {
		t.Fatalf("oversized line: %v %q", code, msg)
	}
	p.send(createTask(4))
	if m := p.response(4); m["result"] == nil {
		t.Fatalf("the next request after an oversized line: %v", m)
	}
}
