package main

// Multi-process soak: three server processes on one database, each driven
// by a real stdio client issuing a mixed workload (spawns, sends to shared
// worker sessions so turns queue across processes, claims on a shared task
// list, reads) for a bounded time. No "database is locked" may reach a
// client, no run may execute twice, no two turns of one session may
// overlap, no task may be claimed twice, and the database must be intact.
//
//	go test -race -count=1 -run TestMultiProcessSoak -v .                 # short: 10 s
//	SESSIONPLANE_LONG=1 go test -count=1 -run TestMultiProcessSoak -v .   # long: 60 s
//
// The throughput figures it logs (calls/s per process, p50/p95 latency,
// cross-process pickup) are the ones BENCHMARKS.md quotes.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/store"
)

const (
	soakWorkers   = 3                      // shared worker sessions agent:main:worker-N (100 ms turns)
	soakSendEvery = 400 * time.Millisecond // per process: worker turns are serial, so sends are paced
	soakWave      = 30 * time.Second       // the longest a call may take
)

// soakStats is one driver's record.
type soakStats struct {
	agent     string
	key       string // the client's session
	calls     int
	elapsed   time.Duration
	lat       []time.Duration
	byTool    map[string][]time.Duration
	failures  []string
	claimed   []int64
	sends     []soakSend
	announced map[string]int // run id → times in front of a tool result
	notified  map[string]int
	counts    map[string]int // tool (action) → calls
}

// soakSend is an accepted sessions_send: when it was sent and when its
// acceptance came back (client clock).
type soakSend struct {
	runID      string
	sent, aked time.Time
}

func (s *soakStats) fail(format string, args ...any) {
	s.failures = append(s.failures, fmt.Sprintf(format, args...))
}

// check judges one call: a response within soakWave, no JSON-RPC error, no
// lock error in any text, and isError only where the workload expects it
// (a lost claim race, a worker session not created yet).
func (s *soakStats) check(tc *toolCall) bool {
	if !tc.wait(soakWave) {
		if tc.TimedOut {
			s.fail("%s %v: no response within %v", tc.Tool, tc.Args, soakWave)
		} else {
			s.fail("%s %v: the server process ended before answering", tc.Tool, tc.Args)
		}
		return false
	}
	s.calls++
	s.lat = append(s.lat, tc.Took)
	name := tc.Tool
	if a, ok := tc.Args["action"].(string); ok {
		name += " " + a
	}
	s.byTool[name] = append(s.byTool[name], tc.Took)
	s.counts[name]++
	if e := tc.Resp["error"]; e != nil {
		s.fail("%s %v: JSON-RPC error %v", tc.Tool, tc.Args, e)
		return false
	}
	text := strings.Join(tc.texts(), "\n")
	// SQLite's lock errors, and PostgreSQL's serialization failure (40001)
	// and deadlock (40P01), are retried inside the store: none may reach a client.
	if low := strings.ToLower(text); strings.Contains(low, "database is locked") || strings.Contains(low, "sqlite_busy") ||
		strings.Contains(low, "stayed locked") || strings.Contains(low, "could not serialize") || strings.Contains(low, "deadlock detected") ||
		strings.Contains(low, "sqlstate 40001") || strings.Contains(low, "sqlstate 40p01") {
		s.fail("%s %v: lock error reached the client: %s", tc.Tool, tc.Args, text)
	}
	for _, id := range tc.announcedRuns() {
		s.announced[id]++
	}
	if n := tc.unparsedAnnounces(); n > 0 {
		s.fail("%s: %d announces in front of the result not understood: %q", tc.Tool, n, text)
	}
	if tc.isError() {
		expected := (name == "task_list claim" && (strings.Contains(text, "already claimed") || strings.Contains(text, "not pending"))) ||
			(name == "task_list list" && strings.Contains(text, "no task list named")) || // before the first create committed
			(name == "sessions_history" && strings.Contains(text, "not found"))
		if !expected {
			s.fail("%s %v: %s", tc.Tool, tc.Args, text)
		}
		return false
	}
	return true
}

// soakDrive runs one process's workload until the deadline: each wave
// pipelines a spawn, a paced send to a shared worker, a task create, a
// read and a list of pending tasks, then claims two of those tasks (other
// processes race for the same ones).
func soakDrive(c *rpcClient, s *soakStats, rng *rand.Rand, until time.Time) {
	start := time.Now()
	defer func() { s.elapsed = time.Since(start) }()
	var lastSend time.Time
	for n := 1; time.Now().Before(until) && len(s.failures) < 20; n++ {
		var wave []*toolCall
		call := func(tool string, args map[string]any) *toolCall {
			tc := c.startTool(tool, args)
			wave = append(wave, tc)
			return tc
		}
		call("sessions_spawn", map[string]any{"task": fmt.Sprintf("quick soak %s-%d", s.agent, n), "label": fmt.Sprintf("%s-%d", s.agent, n)})
		if time.Since(lastSend) >= soakSendEvery {
			lastSend = time.Now()
			call("sessions_send", map[string]any{"key": fmt.Sprintf("agent:main:worker-%d", rng.IntN(soakWorkers)),
				"message": fmt.Sprintf("work from %s #%d", s.agent, n), "timeoutSeconds": 0})
		}
		call("task_list", map[string]any{"action": "create", "list": "soak", "title": fmt.Sprintf("%s-%d", s.agent, n)})
		pending := call("task_list", map[string]any{"action": "list", "list": "soak", "status": "pending"})
		switch n % 3 {
		case 0:
			call("sessions_list", map[string]any{"limit": 20})
		case 1:
			call("sessions_search", map[string]any{"query": "fine"})
		default:
			call("sessions_history", map[string]any{"key": fmt.Sprintf("agent:main:worker-%d", rng.IntN(soakWorkers)), "limit": 5})
		}
		for _, tc := range wave {
			if s.check(tc) && tc.Tool == "sessions_send" {
				id, _ := tc.structured()["runId"].(string)
				s.sends = append(s.sends, soakSend{runID: id, sent: tc.sent, aked: tc.sent.Add(tc.Took)})
			}
		}
		tasks, _ := pending.structured()["tasks"].([]any)
		var claims []*toolCall
		for _, k := range rng.Perm(len(tasks)) {
			if len(claims) == 2 {
				break
			}
			id := int64(tasks[k].(map[string]any)["id"].(float64))
			claims = append(claims, c.startTool("task_list", map[string]any{"action": "claim", "id": id}))
		}
		for _, tc := range claims {
			if s.check(tc) {
				task, _ := tc.structured()["task"].(map[string]any)
				if task["owner"] != s.key {
					s.fail("claim %v won but the task's owner is %v", tc.Args, task["owner"])
				}
				s.claimed = append(s.claimed, tc.Args["id"].(int64))
			}
		}
	}
}

func TestMultiProcessSoak(t *testing.T) {
	dur := 10 * time.Second
	if longRun() {
		dur = 60 * time.Second
	}
	seed := testSeed(t)
	t.Logf("seed %d (replay with SESSIONPLANE_SEED=%d), 3 processes for %v", seed, seed, dur)
	dir := t.TempDir()
	db := testdb.DSN(t, "sp.db")
	cfg := crashConfig(t, dir)
	agents := []string{"main", "ops", "dev"}
	procs := make([]*stdioProc, len(agents))
	clients := make([]*rpcClient, len(agents))
	for i, a := range agents { // all at once, on a new file: migrations race too
		procs[i] = startServer(t, "--db", db, "--config", cfg, "--agent", a, "--log-level", "warn")
		clients[i] = newRPCClient(procs[i])
	}
	for _, c := range clients {
		c.initialize(t)
	}
	// Cron jobs the three schedulers race for: each occurrence must fire
	// once. One-shot jobs a few seconds out (every: is at least 10 s, so it
	// fires within the short soak at most once) and one every:10s job.
	var setup []*toolCall // client main's calls outside its driver (announces may come in front of them)
	addJob := func(name, schedule string) string {
		tc := clients[0].tool(t, "cron", map[string]any{"action": "add", "job": map[string]any{"name": name, "schedule": schedule,
			"payload": map[string]any{"kind": "agentTurn", "message": "cron tick " + name}}})
		setup = append(setup, tc)
		out := tc.structured()
		job, _ := out["job"].(map[string]any)
		id, _ := job["id"].(string)
		if id == "" {
			t.Fatalf("cron add %s: %v", schedule, out)
		}
		return id
	}
	var atJobs []string
	for k := 1; k <= 3; k++ {
		atJobs = append(atJobs, addJob(fmt.Sprintf("soak once %d", k), "at:"+time.Now().Add(time.Duration(2*k)*time.Second).UTC().Format(time.RFC3339)))
	}
	everyJob := addJob("soak tick", "every:10s")

	stats := make([]*soakStats, len(agents))
	until := time.Now().Add(dur)
	var wg sync.WaitGroup
	for i, a := range agents {
		stats[i] = &soakStats{agent: a, key: "agent:" + a + ":main", byTool: map[string][]time.Duration{}, announced: map[string]int{},
			notified: map[string]int{}, counts: map[string]int{}}
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			soakDrive(clients[i], stats[i], rng, until)
		}()
	}
	wg.Wait()

	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	insts, err := st.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	agentOf := map[string]string{} // instance id → agent of its process
	for _, in := range insts {
		for i, p := range procs {
			if in.PID == p.cmd.Process.Pid {
				agentOf[in.ID] = agents[i]
			}
		}
	}
	wal := fileSize(db + "-wal") // while the processes run (Close truncates it)
	for _, id := range append(atJobs, everyJob) {
		setup = append(setup, clients[0].tool(t, "cron", map[string]any{"action": "remove", "id": id}))
	}
	for _, tc := range setup {
		for _, id := range tc.announcedRuns() {
			stats[0].announced[id]++
		}
	}
	settled := waitRunsSettled(t, st, 90*time.Second)
	// One more call each: the announces of the last runs reach their
	// clients. An announce another process wrote is noticed at this
	// process's next heartbeat poll (docs/SPEC.md §9), not at once, so a
	// client calls until nothing is left undelivered for it (bounded by a
	// few heartbeats); that each reached it exactly once is checked below.
	for i, c := range clients {
		for deadline := time.Now().Add(10 * time.Second); ; {
			stats[i].check(c.startTool("sessions_list", map[string]any{"limit": 1}))
			var left int
			if err := st.DB().QueryRow(`SELECT count(*) FROM announces WHERE requester_key = ? AND delivered_at IS NULL AND silent = 0`,
				stats[i].key).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for i, p := range procs {
		p.stdin.Close()
		if code := p.wait(); code != 0 {
			t.Errorf("process %s exit %d; stderr:\n%s", agents[i], code, p.stderr)
		}
		<-clients[i].eof
		for _, id := range notifiedRuns(clients[i].notifications()) {
			stats[i].notified[id]++
		}
		if junk := clients[i].junkLines(); len(junk) > 0 {
			t.Errorf("process %s: non-JSON-RPC lines on stdout: %q", agents[i], junk)
		}
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			low := strings.ToLower(line)
			if strings.Contains(low, "locked") || strings.Contains(low, "sqlite_busy") || strings.Contains(low, "could not serialize") ||
				strings.Contains(low, "deadlock detected") || strings.Contains(low, "panic") || strings.Contains(line, "level=ERROR") {
				t.Errorf("process %s logged: %s", agents[i], line)
			}
		}
	}

	for _, s := range stats {
		for _, f := range s.failures {
			t.Errorf("client %s: %s", s.agent, f)
		}
		for id, n := range s.announced {
			if n > 1 {
				t.Errorf("client %s: announce of run %s in front of %d tool results, want at most one", s.agent, id, n)
			}
		}
		for id, n := range s.notified {
			if n > 1 {
				t.Errorf("client %s: announce of run %s notified %d times, want at most once", s.agent, id, n)
			}
		}
	}
	snap := checkStoreInvariants(t, st)
	// No process died: every announce to a client reached it, in front of
	// a tool result (the last sessions_list claimed what was left).
	for id, a := range snap.Announces {
		for _, s := range stats {
			if a.Requester == s.key && !a.Silent && s.announced[id] != 1 {
				t.Errorf("client %s: announce of run %s reached it %d times (delivered %v), want once", s.agent, id, s.announced[id], a.Delivered)
			}
		}
	}

	// Runs: all ok; one turn per session at a time, in FIFO order; one
	// reply per run.
	bySession := map[string][]storeRun{}
	kinds := map[string]int{}
	cronRuns := 0
	for _, r := range snap.Runs {
		kinds[r.Kind]++
		if r.State != store.RunOK {
			t.Errorf("run %s (%s %q) ended %s: %s", r.ID, r.Kind, r.Task, r.State, r.Note)
		}
		bySession[r.ChildKey] = append(bySession[r.ChildKey], r)
		if r.Kind == "cron" {
			cronRuns++
		}
	}
	// pickup: a turn queued behind another turn of its session, from that
	// turn's end to its own start, when the same process ran both and when
	// another process did (which polls every 250 ms).
	var queueWait, pickupSame, pickupOther []time.Duration
	outOfID := 0
	for key, runs := range bySession {
		sort.Slice(runs, func(i, j int) bool { return runs[i].StartedAt < runs[j].StartedAt })
		replies := 0
		for _, m := range snap.Msgs[key] {
			if m.Role == store.RoleAssistant {
				replies++
			}
		}
		if replies != len(runs) {
			t.Errorf("session %s: %d replies for %d runs, want one each", key, replies, len(runs))
		}
		for i, r := range runs {
			queueWait = append(queueWait, time.Duration(r.StartedAt-r.CreatedAt)*time.Millisecond)
			if i == 0 {
				continue
			}
			prev := runs[i-1]
			if r.StartedAt < prev.EndedAt {
				t.Errorf("session %s: run %s started at %d while run %s ran until %d (one turn per session)", key, r.ID, r.StartedAt, prev.ID, prev.EndedAt)
			}
			if r.ID < prev.ID {
				outOfID++ // their sends overlapped: the id (taken before the commit) does not order them
			}
			if r.CreatedAt > prev.EndedAt {
				continue // the session was idle: nothing waited
			}
			wait := time.Duration(r.StartedAt-prev.EndedAt) * time.Millisecond
			if r.OwnerInstance != prev.OwnerInstance {
				pickupOther = append(pickupOther, wait)
			} else {
				pickupSame = append(pickupSame, wait)
			}
		}
	}
	// FIFO as a client can see it: a send accepted before another send
	// (to the same session, from any process) was made runs first.
	sends := map[string]soakSend{}
	for _, s := range stats {
		for _, sd := range s.sends {
			sends[sd.runID] = sd
		}
	}
	for key, runs := range bySession { // sorted by start
		for i, b := range runs {
			for _, a := range runs[i+1:] {
				sa, okA := sends[a.ID]
				sb, okB := sends[b.ID]
				if okA && okB && sa.aked.Before(sb.sent) {
					t.Errorf("session %s: run %s started before run %s, whose send was accepted %v before the former's was made (FIFO)",
						key, b.ID, a.ID, sb.sent.Sub(sa.aked))
				}
			}
		}
	}
	// Cron: each occurrence fired by one process only.
	for _, id := range atJobs {
		if n := len(bySession["cron:"+id]); n != 1 {
			t.Errorf("one-shot cron job %s ran %d times, want once", id, n)
		}
	}
	ticks := bySession["cron:"+everyJob] // sorted by start
	for i := 1; i < len(ticks); i++ {
		if gap := ticks[i].CreatedAt - ticks[i-1].CreatedAt; gap < 5000 {
			t.Errorf("cron runs %s and %s fired %d ms apart (every:10s): an occurrence fired twice", ticks[i-1].ID, ticks[i].ID, gap)
		}
	}
	// Claims: every task claimed by at most one client.
	winner := map[int64]string{}
	for _, s := range stats {
		for _, id := range s.claimed {
			if w, ok := winner[id]; ok {
				t.Errorf("task %d claimed by both %s and %s", id, w, s.key)
			}
			winner[id] = s.key
		}
	}
	for id, n := range snap.claimEvents {
		if n > 1 {
			t.Errorf("task %d has %d claim events", id, n)
		}
	}
	for id, w := range winner {
		if snap.tasks[id].owner != w {
			t.Errorf("task %d: owner %q, but %s was told it won the claim", id, snap.tasks[id].owner, w)
		}
	}
	ranBy := map[string]int{}
	for _, r := range snap.Runs {
		ranBy[agentOf[r.OwnerInstance]]++
	}

	// Figures.
	var all []time.Duration
	for _, s := range stats {
		all = append(all, s.lat...)
		t.Logf("process %-4s: %5d calls in %v = %6.1f calls/s; latency p50 %v p95 %v max %v; %d claims won; %d announces delivered in front of results",
			s.agent, s.calls, s.elapsed.Round(time.Millisecond), float64(s.calls)/s.elapsed.Seconds(),
			percentile(s.lat, 50).Round(10*time.Microsecond), percentile(s.lat, 95).Round(10*time.Microsecond),
			slices.Max(append([]time.Duration{0}, s.lat...)).Round(10*time.Microsecond), len(s.claimed), len(s.announced))
	}
	tools := map[string][]time.Duration{}
	for _, s := range stats {
		for k, v := range s.byTool {
			tools[k] = append(tools[k], v...)
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range tools {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range names {
		t.Logf("  %-18s %5d calls  p50 %v  p95 %v", k, len(tools[k]), percentile(tools[k], 50).Round(10*time.Microsecond),
			percentile(tools[k], 95).Round(10*time.Microsecond))
	}
	var total int
	for _, s := range stats {
		total += s.calls
	}
	t.Logf("all: %d calls, %.1f calls/s together; latency p50 %v p95 %v", total, float64(total)/dur.Seconds(),
		percentile(all, 50).Round(10*time.Microsecond), percentile(all, 95).Round(10*time.Microsecond))
	t.Logf("runs: %d %v, run by process %v; queue wait (created → started) p50 %v p95 %v; %d cron runs; %d tasks claimed; settled %v after the clients stopped; WAL %.1f MB for a %.1f MB database; integrity_check %s",
		len(snap.Runs), kinds, ranBy, percentile(queueWait, 50), percentile(queueWait, 95), cronRuns, len(winner), settled.Round(time.Millisecond), float64(wal)/1e6, float64(fileSize(db))/1e6, integrityOK(st))
	// SQLite's auto-checkpoint keeps the WAL bounded under sustained writes
	// (a background-only checkpoint let it reach 2 GB in a 60 s soak). A
	// file-level check: on PostgreSQL (no -wal file beside a URL) the
	// suite's SQLite pass is what checks it.
	if st.Backend() == "sqlite" && wal > 64<<20 {
		t.Errorf("WAL grew to %.1f MB during the soak; checkpoints are not keeping up", float64(wal)/1e6)
	}
	t.Logf("turns queued behind a turn of the same session: %d picked up by the same process (p50 %v p95 %v), %d by another process (p50 %v p95 %v); %d turns started before a turn with a smaller run id (concurrent sends)",
		len(pickupSame), percentile(pickupSame, 50), percentile(pickupSame, 95), len(pickupOther), percentile(pickupOther, 50), percentile(pickupOther, 95), outOfID)
}
