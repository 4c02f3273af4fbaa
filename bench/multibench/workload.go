package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// phase is what one workload phase measured.
type phase struct {
	ops       int           // runs ended ok, counted in the database
	wall      time.Duration // first call → the last run's ended_at
	acks      []time.Duration
	serverCPU time.Duration // all server processes
	pgCPU     time.Duration // the PostgreSQL backends of this run
	retries   int           // whole-batch write retries in the servers' logs
	perOwner  map[string]int
	waits     map[string]int // pg_stat_activity samples of active backends
}

// opsPerSec is completed runs per second.
func (p *phase) opsPerSec() float64 { return float64(p.ops) / p.wall.Seconds() }

// cpuPerOp is the server processes' and PostgreSQL backends' CPU time per
// completed run.
func (p *phase) cpuPerOp() time.Duration {
	if p.ops == 0 {
		return 0
	}
	return (p.serverCPU + p.pgCPU) / time.Duration(p.ops)
}

// callFn is one tool call of client k, number j.
type callFn func(ctx context.Context, k, j int) error

// drive runs clients goroutines, each making perClient sequential calls
// through instance k%len(ins), and returns every call's latency.
func drive(ctx context.Context, ins []*instance, clients, perClient int, call func(ctx context.Context, in *instance, k, j int) error) ([]time.Duration, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var first error
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for k := 0; k < clients; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := ins[k%len(ins)]
			mine := make([]time.Duration, 0, perClient)
			for j := 0; j < perClient && ctx.Err() == nil; j++ {
				t0 := time.Now()
				err := call(ctx, in, k, j)
				d := time.Since(t0)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("client %d call %d: %w", k, j, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, first
}

// callTool calls a tool and returns its structured result's "status".
func callTool(ctx context.Context, in *instance, name string, args map[string]any) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := in.c.CallTool(ctx, req)
	if err != nil {
		return "", err
	}
	if res.IsError {
		return "", fmt.Errorf("%s: isError: %v", name, res.Content)
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return "", err
	}
	var out struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return "", fmt.Errorf("%s: structured result %s: %w", name, b, err)
	}
	return out.Status, nil
}

// sendTurn is one waited sessions_send to client k's own target session:
// the call returns the agent's reply, so its latency is a whole turn.
func sendTurn(ctx context.Context, in *instance, k, j int) error {
	st, err := callTool(ctx, in, "sessions_send", map[string]any{
		"key":            fmt.Sprintf("agent:main:bench-c%d", k),
		"message":        fmt.Sprintf("turn %d of client %d", j, k),
		"timeoutSeconds": 300,
	})
	if err == nil && st != "ok" {
		err = fmt.Errorf("sessions_send: status %q, want ok", st)
	}
	return err
}

// spawn is one sessions_spawn: accepted at once, the child's turn runs in
// the background of the instance that took the call.
func spawn(ctx context.Context, in *instance, k, j int) error {
	st, err := callTool(ctx, in, "sessions_spawn", map[string]any{
		"task": fmt.Sprintf("spawn %d of client %d", j, k),
	})
	if err == nil && st != "accepted" {
		err = fmt.Errorf("sessions_spawn: status %q, want accepted", st)
	}
	return err
}

// runStats reads the runs of a kind from the database: how many, how many
// ended ok, how many have not ended, and the latest end (ms).
func runStats(ctx context.Context, db *store.Store, kind string) (total, ok, open int, lastEnd int64, err error) {
	err = db.DB().QueryRowContext(ctx, `SELECT count(*),
		coalesce(sum(CASE WHEN state = 'ok' THEN 1 ELSE 0 END), 0),
		coalesce(sum(CASE WHEN state IN ('queued', 'running') THEN 1 ELSE 0 END), 0),
		coalesce(max(ended_at), 0) FROM runs WHERE kind = ?`, kind).Scan(&total, &ok, &open, &lastEnd)
	return
}

// waitEnded polls the database (every 50 ms, up to limit) until want runs
// of kind have ended.
func waitEnded(ctx context.Context, db *store.Store, kind string, want int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		total, _, open, _, err := runStats(ctx, db, kind)
		if err != nil {
			return err
		}
		if total >= want && open == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d %s runs ended after %s (%d still queued or running: %s)", total-open, want, kind, limit, open, openRuns(ctx, db, kind))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// check verifies from the database that want runs of kind exist, every
// one ended ok, and each ran once: the scripted model's replies
// ("bench reply: <task>") number perSession in each of want/perSession
// sessions (a run executed twice would reply twice). It fills p.ops,
// p.wall (from start) and p.perOwner.
func check(ctx context.Context, db *store.Store, kind, replyPrefix string, want, perSession int, start time.Time, p *phase) error {
	total, ok, open, lastEnd, err := runStats(ctx, db, kind)
	if err != nil {
		return err
	}
	if total != want || ok != want || open != 0 {
		return fmt.Errorf("check %s runs: %d rows, %d ended ok, %d open; want %d ended ok", kind, total, ok, open, want)
	}
	if err := checkReplies(ctx, db, replyPrefix, want, perSession); err != nil {
		return fmt.Errorf("check %s replies: %w", kind, err)
	}
	rows, err := db.DB().QueryContext(ctx, `SELECT owner_instance, count(*) FROM runs WHERE kind = ? GROUP BY owner_instance`, kind)
	if err != nil {
		return err
	}
	defer rows.Close()
	p.perOwner = map[string]int{}
	for rows.Next() {
		var o string
		var n int
		if err := rows.Scan(&o, &n); err != nil {
			return err
		}
		p.perOwner[o] = n
	}
	p.ops = ok
	p.wall = time.UnixMilli(lastEnd).Sub(start)
	return rows.Err()
}

// checkReplies counts the assistant messages starting with prefix per
// session: want/perSession sessions with exactly perSession each.
func checkReplies(ctx context.Context, db *store.Store, prefix string, want, perSession int) error {
	rows, err := db.DB().QueryContext(ctx, `SELECT session_key, count(*) FROM messages
		WHERE role = 'assistant' AND body LIKE ? GROUP BY session_key`, prefix+"%")
	if err != nil {
		return err
	}
	defer rows.Close()
	sessions, replies := 0, 0
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			return err
		}
		if n != perSession {
			return fmt.Errorf("session %s holds %d replies %q..., want %d (one per run)", key, n, prefix, perSession)
		}
		sessions++
		replies += n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if sessions*perSession != want || replies != want {
		return fmt.Errorf("%d replies %q... in %d sessions, want %d in %d", replies, prefix, sessions, want, want/perSession)
	}
	return nil
}

// openRuns describes the runs of kind not ended yet, for the error of a
// phase that did not drain: which instance holds each, since when.
func openRuns(ctx context.Context, db *store.Store, kind string) string {
	rows, err := db.DB().QueryContext(ctx, `SELECT id, state, owner_instance, created_at, coalesce(started_at, 0), heartbeat_at
		FROM runs WHERE kind = ? AND state IN ('queued', 'running') ORDER BY created_at LIMIT 10`, kind)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	now := time.Now().UnixMilli()
	var parts []string
	for rows.Next() {
		var id, state, owner string
		var created, started, hb int64
		if err := rows.Scan(&id, &state, &owner, &created, &started, &hb); err != nil {
			return err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s %s owner %q created %ds ago, started %d, heartbeat %d", id, state, owner, (now-created)/1000, started, hb))
	}
	return strings.Join(parts, "; ")
}
