package main

// The multi-host kill test (issue 14): three sessionplane hosts and one
// PostgreSQL host, each in a network namespace of its own on one bridged
// /24 (netlab_test.go). Each host serves its own client (a principal of its
// own, agent:main:h<N>: h1 and h2 over stdio inside their namespaces, h3
// over Streamable HTTP on its lab address to a client in namespace c3) a
// mixed workload: quick and slow spawns, fire-and-forget sends to worker sessions
// shared by every host, task creates and claims contested between hosts,
// and a cron job firing every 2 s. Host 2 is SIGKILLed with slow runs in
// flight, running and queued, and calls in flight; the other hosts go on,
// notice it dead by its heartbeat ([cluster] stale_seconds), mark its
// running runs unknown (announced) and adopt its queued runs; later host 2
// is restarted and its client goes on. Then the database is checked: no
// acknowledged write lost, no run executed twice, host 2's runs recovered
// as documented, each cron occurrence fired once, every announce delivered
// exactly once.
//
//	go test -count=1 -run TestMultiHostKill -v .
//
// Needs root, iproute2 and PostgreSQL (/usr/lib/postgresql/*/bin); skips
// without root or namespaces, except under CI=true, where it fails.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// mhStale is the hosts' [cluster] stale_seconds (the default): how long a
// SIGKILLed host's runs wait for recovery, and how long a live host's
// heartbeat may stall (on a loaded machine) before it is taken for dead.
const mhStale = 15 * time.Second

// mhToken is the bearer token of h3's HTTP client (principal agent:main:h3).
const mhToken = "multihost-test-token-h3"

// multiHostConfig writes the hosts' config: a scripted provider whose
// "slow" turns take 4 s (so a kill lands mid-run), lanes of 2 (so a burst
// of slow spawns leaves runs queued), a short stale interval and a 1 s cron
// minimum.
func multiHostConfig(t *testing.T, dir string) string {
	t.Helper()
	return scriptedConfig(t, dir, `{"conversations": [
		{"match": "slow", "turns": [{"delay_ms": 4000, "text": "slow done", "usage": {"input_tokens": 10, "output_tokens": 3}}]},
		{"match": "quick", "turns": [{"delay_ms": 20, "text": "quick done", "usage": {"input_tokens": 10, "output_tokens": 3}}]},
		{"turns": [{"delay_ms": 30, "text": "fine", "usage": {"input_tokens": 10, "output_tokens": 1}}]}]}`, fmt.Sprintf(`
[agents.defaults.subagents]
max_children_per_agent = 1000
max_concurrent = 2
[cluster]
stale_seconds = %d
[cron]
min_every_seconds = 1
[[mcp.http.tokens]]
name = "h3"
token_env = "SP_MH_TOKEN"
session = "agent:main:h3"
`, int(mhStale/time.Second)))
}

// mhHost is one sessionplane host of the lab and its client.
type mhHost struct {
	name string     // host id and lab node: h1, h2, h3
	key  string     // its client's own session: agent:main:<name>
	p    *stdioProc // the client's process: the server itself over stdio, or the HTTP bridge
	srv  *stdioProc // the server over HTTP (nil: over stdio, that is p)
	c    *rpcClient
}

// mhLedger is what the clients saw acknowledged, across every host.
type mhLedger struct {
	mu        sync.Mutex
	spawns    []*toolCall // sessions_spawn accepted
	sends     []*toolCall // sessions_send accepted
	tasks     map[int64]string
	open      []int64                   // tasks created, offered to claims (of any host)
	won       map[int64][]string        // task → principals told their claim won
	calls     map[string]map[string]int // principal → mutating call identity → acknowledged
	announced map[string]map[string]int // principal → run → times put in front of a tool result
	notified  map[string]map[string]int // principal → run → times notified
	cronJob   string
	acked     map[string]int // principal → calls acknowledged
}

func newMHLedger() *mhLedger {
	return &mhLedger{tasks: map[int64]string{}, won: map[int64][]string{}, calls: map[string]map[string]int{}, acked: map[string]int{},
		announced: map[string]map[string]int{}, notified: map[string]map[string]int{}}
}

func inc(m map[string]map[string]int, a, b string) {
	if m[a] == nil {
		m[a] = map[string]int{}
	}
	m[a][b]++
}

// record notes an acknowledged call of principal's client.
func (led *mhLedger) record(t *testing.T, principal string, call *toolCall) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	led.acked[principal]++
	if call.Tool != "sessions_list" { // a read's record may be lost to a kill (README: durability)
		inc(led.calls, principal, argsKey(call.Tool, call.Args))
	}
	for _, id := range call.announcedRuns() {
		inc(led.announced, principal, id)
	}
	if n := call.unparsedAnnounces(); n > 0 {
		t.Errorf("%s %s: %d announces in front of the result not understood: %q", principal, call.Tool, n, call.texts())
	}
	if e := call.Resp["error"]; e != nil {
		t.Errorf("%s %s %v: JSON-RPC error %v", principal, call.Tool, call.Args, e)
		return
	}
	out := call.structured()
	switch action, _ := call.Args["action"].(string); {
	case call.Tool == "sessions_spawn" || call.Tool == "sessions_send":
		if out["status"] != "accepted" {
			t.Errorf("%s %s %v: %v", principal, call.Tool, call.Args, call.texts())
			return
		}
		if call.Tool == "sessions_spawn" {
			led.spawns = append(led.spawns, call)
		} else {
			led.sends = append(led.sends, call)
		}
	case call.Tool == "task_list" && action == "create":
		task, _ := out["task"].(map[string]any)
		id, _ := task["id"].(float64)
		if call.isError() || id == 0 {
			t.Errorf("%s task_list create %v: %v", principal, call.Args, call.texts())
			return
		}
		led.tasks[int64(id)] = call.Args["title"].(string)
		led.open = append(led.open, int64(id))
	case call.Tool == "task_list" && action == "claim":
		id := call.Args["id"].(int64)
		if call.isError() { // another host's claim won: fine, as long as one did
			if !strings.Contains(strings.Join(call.texts(), " "), "already") {
				t.Errorf("%s claim of task %d: %v", principal, id, call.texts())
			}
			return
		}
		led.won[id] = append(led.won[id], principal)
	case call.Tool == "cron" && action == "add":
		job, _ := out["job"].(map[string]any)
		led.cronJob, _ = job["id"].(string)
		if led.cronJob == "" {
			t.Errorf("cron add: %v", call.texts())
		}
	case call.Tool == "sessions_list":
		if call.isError() {
			t.Errorf("%s sessions_list: %v", principal, call.texts())
		}
	}
}

// claimable picks up to n tasks for a claim; a task stays offered for a
// while, so hosts race for it.
func (led *mhLedger) claimable(rng *rand.Rand, n int) []int64 {
	led.mu.Lock()
	defer led.mu.Unlock()
	var ids []int64
	for k := 0; k < n && len(led.open) > 0; k++ {
		j := rng.IntN(len(led.open))
		ids = append(ids, led.open[j])
		if rng.IntN(2) == 0 { // offered once more, at most: to another host, likely
			led.open = slices.Delete(led.open, j, j+1)
		}
	}
	return ids
}

// mhWave is one wave of a host's calls, in a random order.
func mhWave(rng *rand.Rand, id string, led *mhLedger) []*toolCall {
	var calls []*toolCall
	add := func(tool string, args map[string]any) { calls = append(calls, &toolCall{Tool: tool, Args: args}) }
	for k := 0; k < 1+rng.IntN(2); k++ {
		task := fmt.Sprintf("quick job %s-%d", id, k)
		add("sessions_spawn", map[string]any{"task": task, "label": task})
	}
	if rng.IntN(6) == 0 {
		task := fmt.Sprintf("slow job %s", id)
		add("sessions_spawn", map[string]any{"task": task, "label": task})
	}
	for k := 0; k < 1+rng.IntN(2); k++ {
		add("sessions_send", map[string]any{"key": fmt.Sprintf("agent:main:worker-%d", rng.IntN(3)),
			"message": fmt.Sprintf("quick work item %s-%d", id, k), "timeoutSeconds": 0})
	}
	add("task_list", map[string]any{"action": "create", "list": "multihost", "title": "task " + id})
	for _, tid := range led.claimable(rng, 2) {
		add("task_list", map[string]any{"action": "claim", "id": tid})
	}
	add("sessions_list", map[string]any{"limit": 3})
	rng.Shuffle(len(calls), func(a, b int) { calls[a], calls[b] = calls[b], calls[a] })
	return calls
}

// drive sends waves of calls to h until stop is closed; every call of a
// live host must be answered.
func (h *mhHost) drive(t *testing.T, led *mhLedger, rng *rand.Rand, tag string, stop <-chan struct{}) {
	pace := time.NewTicker(400 * time.Millisecond)
	defer pace.Stop()
	for wave := 0; ; wave++ {
		calls := mhWave(rng, fmt.Sprintf("%s-%d", tag, wave), led)
		for _, call := range calls {
			*call = *h.c.startTool(call.Tool, call.Args)
		}
		for _, call := range calls {
			if !call.wait(60 * time.Second) {
				t.Errorf("%s: %s %v: no response in 60 s from a live host", h.name, call.Tool, call.Args)
				return
			}
			led.record(t, h.key, call)
		}
		select {
		case <-stop:
			return
		case <-pace.C:
		}
	}
}

// notes adds the announce notifications h's client received.
func (led *mhLedger) notes(h *mhHost) {
	led.mu.Lock()
	defer led.mu.Unlock()
	for _, id := range notifiedRuns(h.c.notifications()) {
		inc(led.notified, h.key, id)
	}
}

// mhWait polls cond until it holds, failing the test after d.
func mhWait(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func TestMultiHostKill(t *testing.T) {
	lab := newNetLab(t, "pg", "h1", "h2", "h3", "c3")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // the scripted provider's file, read by every host
		t.Fatal(err)
	}
	cfg := multiHostConfig(t, dir)
	// The hosts reach the database over the lab's network; the test reads
	// it through the server's Unix socket.
	pg := lab.startPostgres("pg")
	hostDB, testDB := pg.hostURL, pg.testURL
	ctx := context.Background()
	seed := testSeed(t)
	t.Logf("seed %d (replay with SESSIONPLANE_SEED=%d)", seed, seed)

	led := newMHLedger()
	hosts := map[string]*mhHost{}
	start := func(name string) *mhHost {
		h := &mhHost{name: name, key: "agent:main:" + name}
		if name == "h3" {
			// h3 serves Streamable HTTP on its lab address, to a client
			// in namespace c3 (the test binary in bridge mode).
			addr := lab.addr["h3"] + ":8765"
			h.srv = lab.startHost(name, name, "--db", hostDB, "--config", cfg, "--http", addr, "--log-level", "info")
			cmd := lab.command("c3", os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envBridgeURL+"=http://"+addr+"/mcp", envBridgeToken+"="+mhToken)
			h.p = startProc(t, cmd)
			logOnFailure(t, "h3's HTTP client (c3)", h.p)
		} else {
			h.p = lab.startHost(name, name, "--db", hostDB, "--config", cfg, "--session", h.key, "--log-level", "info")
		}
		h.c = newRPCClient(h.p)
		h.c.initialize(t)
		hosts[name] = h
		return h
	}
	h1 := start("h1")
	st, err := store.Open(ctx, testDB, nil) // after h1 made the schema
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h2, h3 := start("h2"), start("h3")

	// The cron job, created on h1, fired by whichever host claims each occurrence.
	led.record(t, h1.key, h1.c.tool(t, "cron", map[string]any{"action": "add", "job": map[string]any{"name": "tick",
		"schedule": "every:2s", "payload": map[string]any{"kind": "agentTurn", "message": "cron tick"}}}))
	if led.cronJob == "" {
		t.Fatal("cron add acknowledged no job")
	}

	type driver struct{ stop, done chan struct{} }
	drivers := map[string]driver{}
	drive := func(h *mhHost, tag string, k uint64) {
		d := driver{make(chan struct{}), make(chan struct{})}
		drivers[h.name] = d
		go func() {
			defer close(d.done)
			h.drive(t, led, rand.New(rand.NewPCG(seed, k)), tag, d.stop)
		}()
	}
	halt := func(name string) {
		close(drivers[name].stop)
		select {
		case <-drivers[name].done:
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s's client did not stop", name)
		}
	}
	defer func() { // on a failure: stop every client still driving
		for _, d := range drivers {
			select {
			case <-d.stop:
			default:
				close(d.stop)
			}
			<-d.done
		}
	}()
	drive(h1, "h1", 1)
	drive(h2, "h2", 2)
	drive(h3, "h3", 3)
	<-time.After(5 * time.Second) // the workload's length, not a wait for an event

	// Host 2: its client stops driving, then a burst of slow work leaves
	// runs of its own running and queued (lanes of 2, one turn per
	// session).
	halt("h2")
	var burst []*toolCall
	for k := 0; k < 5; k++ {
		task := fmt.Sprintf("slow burst %d", k)
		burst = append(burst, h2.c.startTool("sessions_spawn", map[string]any{"task": task, "label": task}))
	}
	for k := 0; k < 3; k++ {
		burst = append(burst, h2.c.startTool("sessions_send", map[string]any{"key": "agent:main:worker-h2",
			"message": fmt.Sprintf("slow burst send %d", k), "timeoutSeconds": 0}))
	}
	for _, call := range burst {
		if !call.wait(60 * time.Second) {
			t.Fatalf("h2 burst %s %v: no response", call.Tool, call.Args)
		}
		led.record(t, h2.key, call)
	}
	var inst2 string
	ins, err := st.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.Host == "h2" {
			inst2 = in.ID
		}
	}
	if inst2 == "" {
		t.Fatalf("no instance of host h2 registered: %+v", ins)
	}
	owned := func(state string) []*store.Run {
		runs, err := st.ListRuns(ctx, store.RunFilter{States: []string{state}})
		if err != nil {
			t.Fatal(err)
		}
		var out []*store.Run
		for _, r := range runs {
			if r.OwnerInstance == inst2 {
				out = append(out, r)
			}
		}
		return out
	}
	mhWait(t, "a slow run of h2 running", 60*time.Second, func() bool { return len(owned(store.RunRunning)) > 0 })
	// Calls in flight when the kill lands: what was answered before it
	// counts as acknowledged.
	var inflight []*toolCall
	for k := 0; k < 4; k++ {
		inflight = append(inflight, h2.c.startTool("task_list", map[string]any{"action": "create", "list": "multihost", "title": fmt.Sprintf("task inflight %d", k)}))
		inflight = append(inflight, h2.c.startTool("sessions_send", map[string]any{"key": fmt.Sprintf("agent:main:worker-%d", k),
			"message": fmt.Sprintf("quick work inflight %d", k), "timeoutSeconds": 0}))
	}
	inflight[0].wait(10 * time.Second) // the first answered, the others may be cut off
	if err := h2.p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	h2.p.wait()
	<-h2.c.eof
	answered := 0
	for _, call := range inflight {
		if call.wait(0) {
			answered++
			led.record(t, h2.key, call)
		}
	}
	led.notes(h2)
	running, queued := owned(store.RunRunning), owned(store.RunQueued)
	var lastBeat int64 // h2's last heartbeat (ms)
	if ins, err = st.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.ID == inst2 {
			lastBeat = in.HeartbeatAt
		}
	}
	t.Logf("h2 (instance %s) SIGKILLed with %d runs running, %d queued; %d of %d calls in flight answered", inst2, len(running), len(queued), answered, len(inflight))
	if len(running) == 0 || len(queued) == 0 {
		t.Fatalf("the kill should land with runs of h2 both running and queued: %d running, %d queued", len(running), len(queued))
	}

	// h1 and h3 go on; by h2's stale heartbeat they recover its runs.
	mhWait(t, "h2's runs recovered by h1/h3", 3*mhStale+30*time.Second, func() bool {
		return len(owned(store.RunRunning))+len(owned(store.RunQueued)) == 0
	})
	recoveredAt := time.Now()
	t.Logf("h2's runs recovered %v after the kill", recoveredAt.Sub(killedAt).Round(time.Millisecond))
	// The namespaces share a pid space: a pid check across host ids would
	// have recovered them at once, not after the heartbeat went stale.
	if stale := time.UnixMilli(lastBeat).Add(mhStale); recoveredAt.Before(stale) {
		t.Errorf("h2's runs recovered at %s, before its last heartbeat (%s) was %v old", recoveredAt.Format("15:04:05.000"),
			time.UnixMilli(lastBeat).Format("15:04:05.000"), mhStale)
	}

	// h2 comes back (same host id, a new process) and its client goes on.
	h2 = start("h2")
	drive(h2, "h2b", 4)
	<-time.After(5 * time.Second)
	// The job goes on firing after the recovery (an occurrence is skipped
	// while the previous run is active: h2's cron run may have been among
	// the queued runs adopted, waiting behind the slow ones).
	mhWait(t, "a cron occurrence due after h2's recovery", 90*time.Second, func() bool {
		msgs, err := st.Transcript(ctx, "cron:"+led.cronJob)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if o := occurrenceRE.FindStringSubmatch(m.Content.Text); o != nil {
				if due, err := time.Parse(time.RFC3339Nano, o[1]); err == nil && due.After(recoveredAt) {
					return true
				}
			}
		}
		return false
	})
	for _, name := range []string{"h1", "h2", "h3"} {
		halt(name)
	}

	// Quiesce: no new cron runs, every run ends, every announce delivered.
	led.record(t, h1.key, h1.c.tool(t, "cron", map[string]any{"action": "remove", "id": led.cronJob}))
	settled := waitRunsSettled(t, st, 120*time.Second)
	ins, err = st.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hostOf := map[string]string{inst2: "h2"}
	for _, in := range ins {
		hostOf[in.ID] = in.Host
	}
	for _, name := range []string{"h1", "h2", "h3"} {
		h := hosts[name]
		for k := 0; k < 5; k++ {
			led.record(t, h.key, h.c.tool(t, "sessions_list", map[string]any{"limit": 1}))
			var pending int
			if err := st.DB().QueryRowContext(ctx, `SELECT count(*) FROM announces WHERE requester_key = ? AND delivered_at IS NULL AND silent = 0`, h.key).Scan(&pending); err != nil {
				t.Fatal(err)
			}
			if pending == 0 {
				break
			}
		}
	}
	for _, name := range []string{"h1", "h2", "h3"} {
		h := hosts[name]
		h.p.stdin.Close()
		if code := h.p.wait(); code != 0 {
			t.Errorf("%s's client exit %d; stderr:\n%s", name, code, h.p.stderr)
		}
		<-h.c.eof
		led.notes(h)
		srv := h.p
		if h.srv != nil {
			srv = h.srv
			srv.cmd.Process.Signal(syscall.SIGTERM)
			if code := srv.wait(); code != 0 {
				t.Errorf("%s exit %d after SIGTERM; stderr:\n%s", name, code, srv.stderr)
			}
		}
		if s := srv.stderr.String(); strings.Contains(s, "panic") {
			t.Errorf("%s panicked:\n%s", name, s)
		}
	}

	if st.Backend() != "postgres" {
		t.Fatalf("the test reads a %s store, want the hosts' PostgreSQL", st.Backend())
	}
	snap := checkRunInvariants(t, st)
	led.check(t, snap)
	checkRecovered(t, snap, running, queued, inst2, hostOf)
	checkCronOnce(t, snap, led.cronJob, recoveredAt, hostOf)
	// A live host taken for dead (its heartbeat stalled past stale_seconds)
	// would have had its running runs marked unknown.
	for _, r := range snap.Runs {
		if r.State == store.RunUnknown && !strings.Contains(r.Note, "host h2,") {
			t.Errorf("run %s (%q) ended unknown although only h2 was killed: %s (a live host's heartbeat stalled for %v)", r.ID, r.Task, r.Note, mhStale)
		}
	}
	var commits, rollbacks int64
	if err := st.DB().QueryRowContext(ctx, `SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&commits, &rollbacks); err != nil {
		t.Errorf("pg_stat_database: %v", err)
	}
	states := map[string]int{}
	for _, r := range snap.Runs {
		states[r.Kind+"/"+r.State]++
	}
	t.Logf("calls acknowledged %v; %d runs %v; %d announces; settled in %v; PostgreSQL: %d transactions committed, %d rolled back (mostly serialization conflicts, retried)",
		led.acked, len(snap.Runs), states, len(snap.Announces), settled.Round(time.Millisecond), commits, rollbacks)
}

// check verifies that every acknowledged write is in the database and
// every announce reached its requester's client at most once.
func (led *mhLedger) check(t *testing.T, snap *dbSnapshot) {
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
			t.Errorf("acknowledged spawn %q: run %s missing or wrong", task, id)
		case len(msgs) == 0 || msgs[0].Content.Text != task:
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
			if strings.Contains(m.Content.Text, msg) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("acknowledged send %q is %d times in %s, want once", msg, n, key)
		}
	}
	for id, title := range led.tasks {
		if tk, err := taskByID(snap, id); err != nil || tk.title != title || tk.list != "multihost" {
			t.Errorf("acknowledged task %d %q: %+v %v", id, title, tk, err)
		}
	}
	for id, who := range led.won {
		tk, _ := taskByID(snap, id)
		if len(who) != 1 || tk.owner != who[0] || tk.status != "in_progress" {
			t.Errorf("task %d: claims acknowledged as won by %v; owner %q status %q", id, who, tk.owner, tk.status)
		}
	}
	for id, n := range snap.claimEvents {
		if n > 1 {
			t.Errorf("task %d was claimed %d times", id, n)
		}
	}
	// Every acknowledged mutating call is in its principal's transcript.
	for principal, calls := range led.calls {
		recorded := map[string]int{}
		for _, m := range snap.Msgs[principal] {
			for _, tc := range m.Content.ToolCalls {
				var args any
				_ = json.Unmarshal(tc.Args, &args)
				recorded[argsKey(tc.Name, args)]++
			}
		}
		for k, n := range calls {
			if recorded[k] < n {
				t.Errorf("%s's transcript: %d of %d acknowledged calls %s recorded", principal, recorded[k], n, k)
			}
		}
	}
	// Announces: exactly once to their requester's client: at most once in
	// front of a tool result, at most once as a notification, all delivered.
	for principal, ids := range led.announced {
		for id, n := range ids {
			a, ok := snap.Announces[id]
			if n > 1 || !ok || !a.Delivered || a.Requester != principal {
				t.Errorf("announce of run %s put in front of %d tool results of %s (row %v, delivered %v, requester %s), want once", id, n, principal, ok, a.Delivered, a.Requester)
			}
		}
	}
	for principal, ids := range led.notified {
		for id, n := range ids {
			if n > 1 {
				t.Errorf("announce of run %s notified to %s %d times, want at most once", id, principal, n)
			}
		}
	}
	for id, a := range snap.Announces {
		if strings.HasPrefix(a.Requester, "agent:main:h") && !a.Silent && !a.Delivered {
			t.Errorf("announce of run %s to %s was never delivered", id, a.Requester)
		}
	}
}

// checkRecovered: the runs h2 was running when killed ended unknown, with
// an announce naming the host; its queued runs were adopted by a live host
// and ran once, to the end.
func checkRecovered(t *testing.T, snap *dbSnapshot, running, queued []*store.Run, inst2 string, hostOf map[string]string) {
	t.Helper()
	runs := map[string]storeRun{}
	for _, r := range snap.Runs {
		runs[r.ID] = r
	}
	for _, was := range running {
		r := runs[was.ID]
		a := snap.Announces[was.ID]
		if r.Run == nil || r.State != store.RunUnknown || !strings.Contains(r.Note, "host h2") || a.Status != store.RunUnknown || !a.Delivered {
			t.Errorf("run %s (%q) was running on h2 when it was killed: now %+v, announce %+v; want unknown, announced and delivered", was.ID, was.Task, r.Run, a)
		}
	}
	adopters := map[string]int{}
	for _, was := range queued {
		r := runs[was.ID]
		if r.Run == nil || r.State != store.RunOK || r.OwnerInstance == inst2 || r.Iterations != 1 {
			t.Errorf("run %s (%q) was queued on h2 when it was killed: now %+v; want adopted by another host and ok after one model turn", was.ID, was.Task, r.Run)
			continue
		}
		adopters[hostOf[r.OwnerInstance]]++
	}
	for host := range adopters {
		if host != "h1" && host != "h3" {
			t.Errorf("h2's queued runs adopted by %v: want h1 or h3 only (h2 came back after the recovery)", adopters)
		}
	}
	t.Logf("h2's %d running runs ended unknown; its %d queued runs adopted by %v", len(running), len(queued), adopters)
}

// occurrenceRE reads the occurrence a cron turn serves from its message.
var occurrenceRE = regexp.MustCompile(`occurrence due (\S+)\]`)

// checkCronOnce: each cron turn's message (in session cron:<job>) names
// its occurrence; no occurrence fired twice, occurrences are on the job's
// 2 s grid, every cron run's message is there, and the job went on firing
// after h2's runs were recovered.
func checkCronOnce(t *testing.T, snap *dbSnapshot, job string, recoveredAt time.Time, hostOf map[string]string) {
	t.Helper()
	key := "cron:" + job
	byHost, runs := map[string]int{}, 0
	for _, r := range snap.Runs {
		if r.Kind == "cron" && r.ChildKey == key {
			runs++
			byHost[hostOf[r.OwnerInstance]]++
		}
	}
	fired := map[string]int{}
	var dues []time.Time
	for _, m := range snap.Msgs[key] {
		if m.Role != store.RoleUser {
			continue
		}
		o := occurrenceRE.FindStringSubmatch(m.Content.Text)
		if o == nil {
			t.Errorf("cron turn message (seq %d) names no occurrence: %q", m.Seq, m.Content.Text)
			continue
		}
		if fired[o[1]]++; fired[o[1]] > 1 {
			t.Errorf("cron occurrence %s fired %d times, want once", o[1], fired[o[1]])
			continue
		}
		due, err := time.Parse(time.RFC3339Nano, o[1])
		if err != nil {
			t.Errorf("cron occurrence %q: %v", o[1], err)
			continue
		}
		dues = append(dues, due)
	}
	if len(fired) != runs {
		t.Errorf("%d cron runs of job %s but %d occurrences in its transcript", runs, job, len(fired))
	}
	sort.Slice(dues, func(i, j int) bool { return dues[i].Before(dues[j]) })
	for i := 1; i < len(dues); i++ {
		if gap := dues[i].Sub(dues[0]); gap%(2*time.Second) != 0 {
			t.Errorf("cron occurrences %s and %s are not on the job's 2 s grid", dues[0], dues[i])
		}
	}
	if len(dues) < 3 || !dues[len(dues)-1].After(recoveredAt) {
		t.Errorf("cron fired %d occurrences (%v), want at least 3 and one after h2's recovery (%v)", len(dues), dues, recoveredAt)
	}
	t.Logf("cron: %d occurrences fired once each (%s … %s), runs by host %v", len(dues), first(dues), last(dues), byHost)
}

func first(ts []time.Time) string {
	if len(ts) == 0 {
		return "-"
	}
	return ts[0].Format("15:04:05.000")
}

func last(ts []time.Time) string {
	if len(ts) == 0 {
		return "-"
	}
	return ts[len(ts)-1].Format("15:04:05.000")
}
