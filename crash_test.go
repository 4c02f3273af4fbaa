package main

// Crash recovery: a real server process is SIGKILLed at random points of a
// mixed workload (spawns, sends, cron, task claims) and restarted on the
// same database, again and again; then a clean server recovers what the
// dead ones left and the database is checked: no acknowledged call is lost,
// every run ends, every run that announces has exactly one announce, which
// reaches the client at most once and sits in its transcript exactly once,
// no transcript has a seq gap, and PRAGMA integrity_check is ok.
//
//	go test -race -count=1 -run TestCrashRecovery -v .                     # short: 5 kills
//	SESSIONPLANE_LONG=1 go test -count=1 -run TestCrashRecovery -v .       # long: 50 kills
//	SESSIONPLANE_SEED=<seed> go test -count=1 -run TestCrashRecovery -v .  # replay a logged seed
//
// The helpers here (rpcClient, checkStoreInvariants) are shared with
// soak_test.go.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// longRun reports whether SESSIONPLANE_LONG asks for the long versions of
// the crash and soak tests.
func longRun() bool {
	v := os.Getenv("SESSIONPLANE_LONG")
	return v != "" && v != "0"
}

// testSeed is SESSIONPLANE_SEED when set (to replay a run), else the clock.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("SESSIONPLANE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SESSIONPLANE_SEED=%q: want an unsigned integer", s)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// ---- a multiplexing JSON-RPC client over a server's stdio ----

// rpcClient multiplexes JSON-RPC calls over one server process's stdio.
// Unlike stdioProc's helpers it never calls t.Fatal (goroutines may use
// it), and it keeps the responses that arrive after the process was killed:
// the server wrote them before it died, so they were acknowledged.
type rpcClient struct {
	p   *stdioProc
	wmu sync.Mutex // serializes writes to stdin

	mu      sync.Mutex
	nextID  int
	pending map[int]chan rpcResponse
	notes   []map[string]any // notifications and server requests, in arrival order
	junk    []string         // stdout lines that are not JSON-RPC 2.0
	eof     chan struct{}    // closed when the server's stdout ended
}

func newRPCClient(p *stdioProc) *rpcClient {
	c := &rpcClient{p: p, nextID: 1, pending: map[int]chan rpcResponse{}, eof: make(chan struct{})}
	go c.read()
	return c
}

func (c *rpcClient) read() {
	defer close(c.eof)
	for line := range c.p.lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["jsonrpc"] != "2.0" {
			c.mu.Lock()
			c.junk = append(c.junk, line)
			c.mu.Unlock()
			continue
		}
		id, isNum := m["id"].(float64)
		_, isRequest := m["method"]
		c.mu.Lock()
		if ch, ok := c.pending[int(id)]; ok && isNum && !isRequest {
			delete(c.pending, int(id))
			ch <- rpcResponse{Msg: m, At: time.Now()}
		} else {
			c.notes = append(c.notes, m)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	for id, ch := range c.pending {
		close(ch) // no response will come: the process is gone
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

func (c *rpcClient) write(msg any) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.p.stdin.Write(append(b, '\n'))
	return err
}

// rpcResponse is a response and when it arrived.
type rpcResponse struct {
	Msg map[string]any
	At  time.Time
}

// request sends a request and returns the channel its response arrives on
// (closed without a value when the process ends first).
func (c *rpcClient) request(method string, params any) <-chan rpcResponse {
	ch := make(chan rpcResponse, 1)
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	if err := c.write(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}); err != nil {
		c.mu.Lock()
		if _, ok := c.pending[id]; ok {
			delete(c.pending, id)
			close(ch)
		}
		c.mu.Unlock()
	}
	return ch
}

// handshake sends initialize and notifications/initialized without
// waiting; the returned channel carries the initialize response.
func (c *rpcClient) handshake() <-chan rpcResponse {
	ch := c.request("initialize", map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "crash-soak-test", "version": "1"}})
	_ = c.write(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
	return ch
}

// initialize runs the handshake and waits for the response (test goroutine only).
func (c *rpcClient) initialize(t *testing.T) {
	t.Helper()
	select {
	case r, ok := <-c.handshake():
		if !ok {
			code := c.p.wait()
			t.Fatalf("initialize: the server exited (code %d) before answering; stderr:\n%s", code, c.p.stderr)
		}
		if r.Msg["result"] == nil {
			t.Fatalf("initialize: %v", r.Msg)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("initialize: no response in 30 s")
	}
}

// notifications returns a copy of the notifications received so far.
func (c *rpcClient) notifications() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.notes)
}

func (c *rpcClient) junkLines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.junk)
}

// toolCall is one tools/call and, once it came, its response.
type toolCall struct {
	Tool string
	Args map[string]any
	Resp map[string]any // nil: no response (not acknowledged)
	Took time.Duration
	// TimedOut: wait gave up while the response could still come (as
	// opposed to the process having ended).
	TimedOut bool

	sent time.Time
	ch   <-chan rpcResponse
}

// startTool sends a tools/call without waiting for it.
func (c *rpcClient) startTool(tool string, args map[string]any) *toolCall {
	tc := &toolCall{Tool: tool, Args: args, sent: time.Now()}
	tc.ch = c.request("tools/call", map[string]any{"name": tool, "arguments": args})
	return tc
}

// wait waits up to d for the response and reports whether it came.
func (tc *toolCall) wait(d time.Duration) bool {
	if tc.Resp != nil {
		return true
	}
	select { // a response already there wins over an expired timer
	case r, ok := <-tc.ch:
		if ok {
			tc.Resp, tc.Took = r.Msg, r.At.Sub(tc.sent)
		}
		return ok
	default:
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r, ok := <-tc.ch:
		if ok {
			tc.Resp, tc.Took = r.Msg, r.At.Sub(tc.sent)
		}
	case <-timer.C:
		tc.TimedOut = true
	}
	return tc.Resp != nil
}

// tool calls a tool and waits for its result (test goroutine only).
func (c *rpcClient) tool(t *testing.T, tool string, args map[string]any) *toolCall {
	t.Helper()
	tc := c.startTool(tool, args)
	if !tc.wait(60 * time.Second) {
		t.Fatalf("%s %v: no response", tool, args)
	}
	if e := tc.Resp["error"]; e != nil {
		t.Fatalf("%s %v: JSON-RPC error %v", tool, args, e)
	}
	return tc
}

func (tc *toolCall) result() map[string]any {
	r, _ := tc.Resp["result"].(map[string]any)
	return r
}

func (tc *toolCall) structured() map[string]any {
	s, _ := tc.result()["structuredContent"].(map[string]any)
	return s
}

func (tc *toolCall) isError() bool { return tc.result()["isError"] == true }

// texts is every text content item of the result, in order: announce
// prefixes first, the tool's own text last.
func (tc *toolCall) texts() []string {
	var out []string
	items, _ := tc.result()["content"].([]any)
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			if s, ok := m["text"].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// announceRE finds the run of an announce in a delivered announce text.
var announceRE = regexp.MustCompile(`\[announce\] [^\n]*?\(run ([0-9a-f-]{36})\) finished`)

// announcedRuns lists the runs whose announces were put in front of this
// tool result (every content item but the tool's own, last one).
func (tc *toolCall) announcedRuns() []string {
	texts := tc.texts()
	if len(texts) < 2 {
		return nil
	}
	var ids []string
	for _, s := range texts[:len(texts)-1] {
		for _, m := range announceRE.FindAllStringSubmatch(s, -1) {
			ids = append(ids, m[1])
		}
	}
	return ids
}

// unparsedAnnounces counts the announces in front of this result that
// announceRE did not read (a test bug, or a malformed announce).
func (tc *toolCall) unparsedAnnounces() int {
	texts := tc.texts()
	if len(texts) < 2 {
		return 0
	}
	n := 0
	for _, s := range texts[:len(texts)-1] {
		n += strings.Count(s, "[announce]") - len(announceRE.FindAllString(s, -1))
	}
	return n
}

// notifiedRuns lists the runs of the announce notifications received.
func notifiedRuns(notes []map[string]any) []string {
	var ids []string
	for _, n := range notes {
		params, _ := n["params"].(map[string]any)
		if n["method"] != "notifications/message" || params["logger"] != "sessionplane.announce" {
			continue
		}
		if data, ok := params["data"].(map[string]any); ok {
			if id, ok := data["runId"].(string); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// ---- invariants of a database at rest ----

// storeRun is a run row with what the invariant checks need.
type storeRun struct {
	*store.Run
	Silent bool // its options say it never announces
}

// storeAnnounce is an announce row.
type storeAnnounce struct {
	RunID, Requester, Status, Body string
	Silent                         bool
	Delivered, Notified            bool
}

// dbSnapshot is what the invariant checks read from a database.
type dbSnapshot struct {
	Runs      []storeRun
	Announces map[string]storeAnnounce // by run id
	Sessions  map[string]*store.Session
	Msgs      map[string][]store.Message // by session key, in seq order

	tasks       map[int64]snapTask
	claimEvents map[int64]int // task id → "claimed by" events
}

func snapshot(t *testing.T, st *store.Store) *dbSnapshot {
	t.Helper()
	ctx := context.Background()
	snap := &dbSnapshot{Announces: map[string]storeAnnounce{}, Sessions: map[string]*store.Session{}, Msgs: map[string][]store.Message{}}
	runs, err := st.ListRuns(ctx, store.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		var opts struct {
			Silent bool `json:"silent"`
		}
		_ = json.Unmarshal(r.Options, &opts)
		snap.Runs = append(snap.Runs, storeRun{Run: r, Silent: opts.Silent})
	}
	rows, err := st.DB().QueryContext(ctx, `SELECT run_id, requester_key, status, body, silent, delivered_at IS NOT NULL, notified_at IS NOT NULL FROM announces`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a storeAnnounce
		if err := rows.Scan(&a.RunID, &a.Requester, &a.Status, &a.Body, &a.Silent, &a.Delivered, &a.Notified); err != nil {
			t.Fatal(err)
		}
		snap.Announces[a.RunID] = a
	}
	rows.Close()
	err = st.ListSessions(ctx, store.ListFilter{IncludeArchived: true}, func(s *store.Session) bool {
		snap.Sessions[s.Key] = s
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for key := range snap.Sessions {
		msgs, err := st.Transcript(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		snap.Msgs[key] = msgs
	}
	loadTasks(t, st, snap)
	return snap
}

// checkStoreInvariants checks what must hold in any database at rest:
// integrity_check and foreign_key_check clean; every session's seqs are
// 1..message_count with no gap; every run terminal, started and ended in
// order; every run that announces (non-silent) has exactly one announce,
// with the run's state, and every announce lands in its requester's
// transcript exactly once; a run's session never holds more replies than
// it had runs (no run executed twice).
func checkStoreInvariants(t *testing.T, st *store.Store) *dbSnapshot {
	t.Helper()
	if st.Backend() == "sqlite" {
		checkSQLiteFile(t, st)
	}
	return checkRunInvariants(t, st)
}

// checkRunInvariants is checkStoreInvariants without SQLite's own checks
// (so it holds on any backend): seqs without gaps, runs terminal, one
// announce per announcing run, each once in its requester's transcript, no
// run executed twice.
func checkRunInvariants(t *testing.T, st *store.Store) *dbSnapshot {
	t.Helper()
	ctx := context.Background()
	// Seqs: count == max == message_count and min == 1 (UNIQUE(session_key, seq) makes that 1..n).
	srows, err := st.DB().QueryContext(ctx, `SELECT s.key, s.message_count, count(m.id), COALESCE(min(m.seq), 0), COALESCE(max(m.seq), 0)
		FROM sessions s LEFT JOIN messages m ON m.session_key = s.key GROUP BY s.key`)
	if err != nil {
		t.Fatal(err)
	}
	for srows.Next() {
		var key string
		var mc, n, lo, hi int
		if err := srows.Scan(&key, &mc, &n, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n != mc || hi != mc || (n > 0 && lo != 1) {
			t.Errorf("session %s: message_count %d but %d messages with seqs %d..%d (want 1..%d, no gaps)", key, mc, n, lo, hi, mc)
		}
	}
	srows.Close()

	snap := snapshot(t, st)
	runsOf := map[string]int{}
	for _, r := range snap.Runs {
		runsOf[r.ChildKey]++
		if !store.Terminal(r.State) {
			t.Errorf("run %s (%s %q) is still %s", r.ID, r.Kind, r.Task, r.State)
			continue
		}
		if r.StartedAt == 0 || r.EndedAt < r.StartedAt || r.OwnerInstance == "" {
			t.Errorf("run %s (%s, %s): started %d, ended %d, owner %q", r.ID, r.Kind, r.State, r.StartedAt, r.EndedAt, r.OwnerInstance)
		}
		a, ok := snap.Announces[r.ID]
		switch {
		case r.Silent && ok:
			t.Errorf("silent run %s has an announce", r.ID)
		case r.Silent:
		case !ok:
			t.Errorf("run %s (%s %q, %s) ended without an announce", r.ID, r.Kind, r.Task, r.State)
		case a.Status != r.State || a.Requester != r.RequesterKey:
			t.Errorf("announce of run %s: status %s to %s, want %s to %s", r.ID, a.Status, a.Requester, r.State, r.RequesterKey)
		}
	}
	runIDs := map[string]bool{}
	for _, r := range snap.Runs {
		runIDs[r.ID] = true
	}
	for id, a := range snap.Announces {
		if !runIDs[id] {
			t.Errorf("announce for run %s, which does not exist", id)
		}
		if _, ok := snap.Sessions[a.Requester]; !ok {
			continue // the requester never had a transcript
		}
		copies := 0
		for _, m := range snap.Msgs[a.Requester] {
			if m.Content.Text == a.Body {
				copies++
			}
		}
		if copies != 1 {
			t.Errorf("announce of run %s is %d times in %s's transcript, want once", id, copies, a.Requester)
		}
	}
	// A run's turn writes one assistant reply (the scripted turns call no
	// tools): a session with more replies than runs ran one twice.
	for key, n := range runsOf {
		replies := 0
		for _, m := range snap.Msgs[key] {
			if m.Role == store.RoleAssistant {
				replies++
			}
		}
		if replies > n {
			t.Errorf("session %s holds %d replies for %d runs: a run was executed twice", key, replies, n)
		}
	}
	return snap
}

// checkSQLiteFile runs SQLite's own checks of the file: integrity_check
// and foreign_key_check clean. PostgreSQL has no such check of its files
// and enforces foreign keys on every write, so there it has nothing to add.
func checkSQLiteFile(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	rows, err := st.DB().QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		t.Fatal(err)
	}
	var integrity []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		integrity = append(integrity, s)
	}
	rows.Close()
	if len(integrity) != 1 || integrity[0] != "ok" {
		t.Errorf("PRAGMA integrity_check = %q, want [ok]", integrity)
	}
	var fkProblems int
	if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM pragma_foreign_key_check").Scan(&fkProblems); err != nil || fkProblems != 0 {
		t.Errorf("foreign_key_check: %d rows (%v), want 0", fkProblems, err)
	}
}

// fileSize is the size of a file, 0 when it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// integrityOK is PRAGMA integrity_check's verdict, for the logs ("n/a" off
// SQLite).
func integrityOK(st *store.Store) string {
	if st.Backend() != "sqlite" {
		return "n/a (" + st.Backend() + ")"
	}
	var s string
	if err := st.DB().QueryRow("PRAGMA integrity_check").Scan(&s); err != nil {
		return err.Error()
	}
	return s
}

// waitRunsSettled polls the store until no run is queued or running, and
// fails the test (listing them) after d.
func waitRunsSettled(t *testing.T, st *store.Store, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		active, err := st.ListRuns(context.Background(), store.RunFilter{States: []string{store.RunQueued, store.RunRunning}})
		if err != nil {
			t.Fatal(err)
		}
		if len(active) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > d {
			var b strings.Builder
			for _, r := range active {
				fmt.Fprintf(&b, "\n  %s %s %s %q owner %s (pid %d) created %d", r.ID, r.Kind, r.State, r.Task, r.OwnerInstance, r.OwnerPID, r.CreatedAt)
			}
			t.Fatalf("%d runs still active after %s:%s", len(active), d, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// argsKey is a tool call's identity in a transcript: the tool and its
// arguments as canonical JSON.
func argsKey(tool string, args any) string {
	b, _ := json.Marshal(args)
	var v any
	_ = json.Unmarshal(b, &v)
	b, _ = json.Marshal(v)
	return tool + " " + string(b)
}

// ---- the crash test ----

// crashConfig writes the crash and soak config: a scripted provider whose
// turns take a little time (so work is in flight when a process dies, and
// turns of a shared worker session queue behind each other).
func crashConfig(t *testing.T, dir string) string {
	t.Helper()
	return scriptedConfig(t, dir, `{"conversations": [
		{"match": "slow", "turns": [{"delay_ms": 1500, "text": "slow done", "usage": {"input_tokens": 10, "output_tokens": 3}}]},
		{"match": "quick", "turns": [{"delay_ms": 20, "text": "quick done", "usage": {"input_tokens": 10, "output_tokens": 3}}]},
		{"match": "work from", "turns": [{"delay_ms": 100, "text": "worked", "usage": {"input_tokens": 10, "output_tokens": 1}}]},
		{"turns": [{"delay_ms": 30, "text": "fine", "usage": {"input_tokens": 10, "output_tokens": 1}}]}]}`, `
[agents.defaults.subagents]
max_children_per_agent = 1000
`)
}

// crashLedger is what the client saw acknowledged across every process.
type crashLedger struct {
	spawns    []*toolCall // sessions_spawn accepted
	sends     []*toolCall // sessions_send accepted
	tasks     map[int64]string
	claimable []int64 // created, never claimed
	claims    []int64 // claims acknowledged as won
	cronJob   string
	cronRuns  []string
	calls     map[string]int // mutating tool call identity (argsKey) → acknowledged
	announced map[string]int // run id → times put in front of a tool result
	notified  map[string]int // run id → times sent as a notification
	acked     int
	sent      int
}

func TestCrashRecovery(t *testing.T) {
	iterations := 5
	if longRun() {
		iterations = 50
	}
	seed := testSeed(t)
	t.Logf("seed %d (replay with SESSIONPLANE_SEED=%d), %d kills", seed, seed, iterations)
	rng := rand.New(rand.NewPCG(seed, seed^0x5e55))
	dir := t.TempDir()
	db := testdb.DSN(t, "sp.db")
	cfg := crashConfig(t, dir)
	led := &crashLedger{tasks: map[int64]string{}, calls: map[string]int{}, announced: map[string]int{}, notified: map[string]int{}}
	started := time.Now()

	for i := 0; i < iterations; i++ {
		p := startServer(t, "--db", db, "--config", cfg, "--log-level", "warn")
		c := newRPCClient(p)
		spawned := time.Now()
		initCh := c.handshake()
		// The kill lands at a random point: of startup and recovery, of a
		// tool call, or of the runs in flight.
		delay := time.Duration(rng.IntN(301)) * time.Millisecond
		killer := time.AfterFunc(delay, func() { p.cmd.Process.Kill() })
		// Waves of calls, pipelined, until the process is gone; what a
		// wave acknowledged (task ids) feeds the next one.
		acked, lost, waves := 0, map[string]int{}, 0
		for alive := true; alive; waves++ {
			calls := crashWorkload(rng, fmt.Sprintf("%d.%d", i, waves), led)
			for _, call := range calls {
				*call = *c.startTool(call.Tool, call.Args)
			}
			led.sent += len(calls)
			for _, call := range calls {
				if call.wait(30 * time.Second) {
					acked++
					led.record(t, call)
				} else {
					lost[call.Tool]++
					alive = false
					if call.TimedOut {
						t.Errorf("iteration %d: %s %v: no response in 30 s from a live server", i, call.Tool, call.Args)
					}
				}
			}
			select {
			case <-c.eof:
				alive = false
			default:
			}
		}
		killer.Stop()
		p.cmd.Process.Kill() // a wave that timed out: the process is killed all the same
		p.wait()
		<-c.eof
		up := "no initialize response"
		if r, ok := <-initCh; ok && r.Msg["result"] != nil {
			up = fmt.Sprintf("initialized after %v", r.At.Sub(spawned).Round(time.Millisecond))
		}
		for _, id := range notifiedRuns(c.notifications()) {
			led.notified[id]++
		}
		if junk := c.junkLines(); len(junk) > 0 {
			t.Errorf("iteration %d: non-JSON-RPC lines on stdout: %q", i, junk)
		}
		if s := p.stderr.String(); strings.Contains(s, "panic") {
			t.Errorf("iteration %d: the server panicked:\n%s", i, s)
		}
		t.Logf("iteration %d: %s, killed after %v in wave %d: %d calls acknowledged, in flight %v", i, up, delay, waves, acked, lost)
	}

	walAfterKills := fileSize(db + "-wal")
	// A clean server recovers what the dead ones left: running runs become
	// unknown, queued ones are adopted and run.
	p := startServer(t, "--db", db, "--config", cfg, "--log-level", "warn")
	c := newRPCClient(p)
	c.initialize(t)
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	jobs, _ := c.tool(t, "cron", map[string]any{"action": "list"}).structured()["jobs"].([]any)
	var jobIDs []string
	for _, j := range jobs {
		jobIDs = append(jobIDs, j.(map[string]any)["id"].(string))
	}
	if led.cronJob != "" && !slices.Contains(jobIDs, led.cronJob) {
		t.Errorf("cron job %s was acknowledged but is not listed (jobs %v)", led.cronJob, jobIDs)
	}
	var final []*toolCall
	for _, id := range jobIDs { // no new cron runs while the runs settle
		final = append(final, c.tool(t, "cron", map[string]any{"action": "remove", "id": id}))
	}
	settled := waitRunsSettled(t, st, 60*time.Second)
	// Deliver every announce: each tool result claims the pending ones.
	for k := 0; k < 5; k++ {
		final = append(final, c.tool(t, "sessions_list", map[string]any{"limit": 1}))
		var pending int
		st.DB().QueryRow(`SELECT count(*) FROM announces WHERE requester_key = 'agent:main:main' AND delivered_at IS NULL AND silent = 0`).Scan(&pending)
		if pending == 0 {
			break
		}
	}
	for _, call := range final {
		for _, id := range call.announcedRuns() {
			led.announced[id]++
		}
		if n := call.unparsedAnnounces(); n > 0 {
			t.Errorf("%s: %d announces in front of the result not understood: %q", call.Tool, n, call.texts())
		}
	}
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("final server exit %d; stderr:\n%s", code, p.stderr)
	}
	<-c.eof
	for _, id := range notifiedRuns(c.notifications()) {
		led.notified[id]++
	}

	snap := checkStoreInvariants(t, st)
	led.check(t, snap)
	states := map[string]int{}
	for _, r := range snap.Runs {
		states[r.Kind+"/"+r.State]++
	}
	unseen := 0 // delivered in a response the kill cut off: at most once, and still in the transcript
	for id, a := range snap.Announces {
		if a.Delivered && led.announced[id] == 0 {
			unseen++
		}
	}
	t.Logf("after %d kills in %v: %d/%d calls acknowledged; %d runs %v; %d announces: %d seen in front of a tool result, %d delivered in a response lost to a kill, %d notified; recovery settled in %v; WAL after the kills %.1f MB, database %.1f MB; integrity_check %s",
		iterations, time.Since(started).Round(time.Millisecond), led.acked, led.sent, len(snap.Runs), states, len(snap.Announces),
		len(led.announced), unseen, len(led.notified), settled.Round(time.Millisecond), float64(walAfterKills)/1e6, float64(fileSize(db))/1e6, integrityOK(st))
}

// crashWorkload is one process's calls, in a random order: quick and slow
// spawns, fire-and-forget sends to shared workers, task creates and claims
// of tasks created earlier, cron add (until one is acknowledged) or run, a
// read.
func crashWorkload(rng *rand.Rand, i string, led *crashLedger) []*toolCall {
	var calls []*toolCall
	add := func(tool string, args map[string]any) { calls = append(calls, &toolCall{Tool: tool, Args: args}) }
	for k := 0; k < 1+rng.IntN(3); k++ {
		task := fmt.Sprintf("quick job %s-%d", i, k)
		add("sessions_spawn", map[string]any{"task": task, "label": task})
	}
	for k := 0; k < rng.IntN(2); k++ {
		task := fmt.Sprintf("slow job %s-%d", i, k)
		add("sessions_spawn", map[string]any{"task": task, "label": task})
	}
	for k := 0; k < 1+rng.IntN(3); k++ {
		add("sessions_send", map[string]any{"key": fmt.Sprintf("agent:main:worker-%d", rng.IntN(3)),
			"message": fmt.Sprintf("work item %s-%d", i, k), "timeoutSeconds": 0})
	}
	for k := 0; k < 1+rng.IntN(2); k++ {
		add("task_list", map[string]any{"action": "create", "list": "crash", "title": fmt.Sprintf("task %s-%d", i, k)})
	}
	for k := 0; k < 2 && len(led.claimable) > 0; k++ {
		j := rng.IntN(len(led.claimable))
		id := led.claimable[j]
		led.claimable = slices.Delete(led.claimable, j, j+1) // claimed once, acknowledged or not
		add("task_list", map[string]any{"action": "claim", "id": id})
	}
	if led.cronJob == "" {
		add("cron", map[string]any{"action": "add", "job": map[string]any{"name": fmt.Sprintf("tick-%s", i), "schedule": "every:10s",
			"payload": map[string]any{"kind": "agentTurn", "message": "cron tick"}}})
	} else {
		add("cron", map[string]any{"action": "run", "id": led.cronJob})
	}
	add("sessions_list", map[string]any{"limit": 3})
	rng.Shuffle(len(calls), func(a, b int) { calls[a], calls[b] = calls[b], calls[a] })
	return calls
}

// record notes an acknowledged call.
func (led *crashLedger) record(t *testing.T, call *toolCall) {
	t.Helper()
	led.acked++
	if call.Tool != "sessions_list" {
		// A mutating call is recorded before its reply, so a kill never
		// loses an acknowledged one; a read-only call's record is written
		// behind the reply and a kill may lose it (README: durability).
		led.calls[argsKey(call.Tool, call.Args)]++
	}
	for _, id := range call.announcedRuns() {
		led.announced[id]++
	}
	if n := call.unparsedAnnounces(); n > 0 {
		t.Errorf("%s: %d announces in front of the result not understood: %q", call.Tool, n, call.texts())
	}
	if e := call.Resp["error"]; e != nil {
		t.Errorf("%s %v: JSON-RPC error %v", call.Tool, call.Args, e)
		return
	}
	out := call.structured()
	switch action, _ := call.Args["action"].(string); {
	case call.Tool == "sessions_spawn":
		if out["status"] != "accepted" {
			t.Errorf("sessions_spawn %v: %v", call.Args, call.texts())
			return
		}
		led.spawns = append(led.spawns, call)
	case call.Tool == "sessions_send":
		if out["status"] != "accepted" {
			t.Errorf("sessions_send %v: %v", call.Args, call.texts())
			return
		}
		led.sends = append(led.sends, call)
	case call.Tool == "task_list" && action == "create":
		task, _ := out["task"].(map[string]any)
		id, _ := task["id"].(float64)
		if call.isError() || id == 0 {
			t.Errorf("task_list create %v: %v", call.Args, call.texts())
			return
		}
		led.tasks[int64(id)] = call.Args["title"].(string)
		led.claimable = append(led.claimable, int64(id))
	case call.Tool == "task_list" && action == "claim":
		if call.isError() { // only tasks never claimed before are claimed
			t.Errorf("task_list claim %v: %v", call.Args, call.texts())
			return
		}
		led.claims = append(led.claims, call.Args["id"].(int64))
	case call.Tool == "cron" && action == "add":
		job, _ := out["job"].(map[string]any)
		if id, _ := job["id"].(string); id != "" && led.cronJob == "" {
			led.cronJob = id
		} else if id == "" {
			t.Errorf("cron add: %v", call.texts())
		}
	case call.Tool == "cron" && action == "run":
		if id, _ := out["runId"].(string); id != "" {
			led.cronRuns = append(led.cronRuns, id)
		} else if !strings.Contains(strings.Join(call.texts(), " "), "still active") {
			t.Errorf("cron run: %v", call.texts()) // busy is fine: the previous run may still be active
		}
	case call.Tool == "sessions_list":
		if call.isError() {
			t.Errorf("sessions_list: %v", call.texts())
		}
	}
}

// check verifies that everything acknowledged survived every kill, and
// that no announce reached the client twice.
func (led *crashLedger) check(t *testing.T, snap *dbSnapshot) {
	t.Helper()
	runs := map[string]storeRun{}
	for _, r := range snap.Runs {
		runs[r.ID] = r
	}
	for _, call := range led.spawns {
		out := call.structured()
		id, child, task := out["runId"].(string), out["childSessionKey"].(string), call.Args["task"].(string)
		r, ok := runs[id]
		msgs := snap.Msgs[child]
		switch {
		case !ok || r.Kind != "spawn" || r.ChildKey != child:
			t.Errorf("acknowledged spawn %q: run %s missing or wrong (%+v)", task, id, r.Run)
		case snap.Sessions[child] == nil || len(msgs) == 0 || msgs[0].Content.Text != task:
			t.Errorf("acknowledged spawn %q: child session %s lost its task (%d messages)", task, child, len(msgs))
		}
	}
	for _, call := range led.sends {
		id, key, msg := call.structured()["runId"].(string), call.Args["key"].(string), call.Args["message"].(string)
		if r, ok := runs[id]; !ok || r.Kind != "send" || r.ChildKey != key {
			t.Errorf("acknowledged send %q: run %s missing or wrong", msg, id)
		}
		n := 0
		for _, m := range snap.Msgs[key] {
			if m.Content.Text == msg {
				n++
			}
		}
		if n != 1 {
			t.Errorf("acknowledged send %q is %d times in %s, want once", msg, n, key)
		}
	}
	for _, id := range led.cronRuns {
		if r, ok := runs[id]; !ok || r.Kind != "cron" {
			t.Errorf("acknowledged cron run %s missing", id)
		}
	}
	for id, title := range led.tasks {
		tk, err := taskByID(snap, id)
		if err != nil || tk.title != title || tk.list != "crash" {
			t.Errorf("acknowledged task %d %q: %+v %v", id, title, tk, err)
		}
	}
	for _, id := range led.claims {
		tk, _ := taskByID(snap, id)
		if tk.owner != "agent:main:main" || tk.status != "in_progress" {
			t.Errorf("acknowledged claim of task %d: owner %q status %q", id, tk.owner, tk.status)
		}
	}
	for id, n := range snap.claimEvents {
		if n > 1 {
			t.Errorf("task %d was claimed %d times", id, n)
		}
	}
	// Every acknowledged mutating call is in the client's transcript, as a
	// call followed by its result.
	recorded := map[string]int{}
	main := snap.Msgs["agent:main:main"]
	for i, m := range main {
		for _, tc := range m.Content.ToolCalls {
			var args any
			_ = json.Unmarshal(tc.Args, &args)
			recorded[argsKey(tc.Name, args)]++
			if i+1 >= len(main) || len(main[i+1].Content.ToolResults) != 1 || main[i+1].Content.ToolResults[0].CallID != tc.ID {
				t.Errorf("client transcript: call %s (seq %d) is not followed by its result", tc.ID, m.Seq)
			}
		}
	}
	for k, n := range led.calls {
		if recorded[k] < n {
			t.Errorf("client transcript: %d of %d acknowledged calls %s recorded", recorded[k], n, k)
		}
	}
	// Announces: at most once in front of a tool result, at most once as a
	// notification, every one seen was delivered, none left undelivered.
	for id, n := range led.announced {
		a, ok := snap.Announces[id]
		if n > 1 || !ok || !a.Delivered {
			t.Errorf("announce of run %s put in front of %d tool results (row exists %v, delivered %v), want at most one", id, n, ok, a.Delivered)
		}
	}
	for id, n := range led.notified {
		if n > 1 {
			t.Errorf("announce of run %s notified %d times, want at most once", id, n)
		}
	}
	for id, a := range snap.Announces {
		if a.Requester == "agent:main:main" && !a.Silent && !a.Delivered {
			t.Errorf("announce of run %s was never delivered", id)
		}
	}
}

// snapTask is a task row.
type snapTask struct{ list, title, status, owner string }

func taskByID(snap *dbSnapshot, id int64) (snapTask, error) {
	tk, ok := snap.tasks[id]
	if !ok {
		return tk, fmt.Errorf("task %d: %w", id, sql.ErrNoRows)
	}
	return tk, nil
}

// loadTasks adds the task rows and each task's number of claim events to snap.
func loadTasks(t *testing.T, st *store.Store, snap *dbSnapshot) {
	t.Helper()
	snap.tasks, snap.claimEvents = map[int64]snapTask{}, map[int64]int{}
	rows, err := st.DB().Query(`SELECT id, list, title, status, owner FROM tasks`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var tk snapTask
		if err := rows.Scan(&id, &tk.list, &tk.title, &tk.status, &tk.owner); err != nil {
			t.Fatal(err)
		}
		snap.tasks[id] = tk
	}
	rows.Close()
	rows, err = st.DB().Query(`SELECT task_id, count(*) FROM task_events WHERE change LIKE 'claimed by %' GROUP BY task_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var n int
		rows.Scan(&id, &n)
		snap.claimEvents[id] = n
	}
	rows.Close()
}

// percentile is the p-th percentile (0-100) of ds, which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}
