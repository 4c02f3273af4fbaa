package runtime

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Recovery across hosts: a pid is checked only for processes of this host
// id (they share its pid space); a process of another host id is dead only
// when its heartbeat is older than [cluster] stale_seconds. A dead one's
// running run becomes unknown (its note names the host) and is announced.
func TestRecoveryKeyedByHostAndHeartbeat(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[cluster]
host_id = "host-a"
stale_seconds = 6
`), "cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.DSN(t, "sp.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	// A pid that is surely gone: a child that has exited and been reaped.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	dead := child.Process.Pid

	cases := []struct {
		inst, host string
		pid        int
		ageMS      int64 // heartbeat age
		wantState  string
		wantNote   string
	}{
		// Another host whose pid happens to be gone here: alive while it beats.
		{"inst-b", "host-b", dead, 0, store.RunRunning, ""},
		// This host, pid gone: dead at once, heartbeat notwithstanding.
		{"inst-a2", "host-a", dead, 0, store.RunUnknown, "(pid "},
		// Another host, heartbeat 7 s old with stale_seconds = 6: dead.
		{"inst-c", "host-c", 1, 7000, store.RunUnknown, "(host host-c, pid 1)"},
		// Another host, heartbeat 3 s old: alive.
		{"inst-d", "host-d", 1, 3000, store.RunRunning, ""},
	}
	for _, c := range cases {
		if err := st.RegisterInstance(ctx, store.Instance{ID: c.inst, PID: c.pid, Host: c.host}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.DB().ExecContext(ctx, `UPDATE instances SET heartbeat_at = heartbeat_at - ? WHERE id = ?`, c.ageMS, c.inst); err != nil {
			t.Fatal(err)
		}
		key := "agent:main:subagent:" + c.inst
		r := &store.Run{ID: "run-" + c.inst, Kind: KindSpawn, ChildKey: key, RequesterKey: "agent:main:main", AgentID: "main",
			Task: "work", State: store.RunRunning, OwnerPID: c.pid, OwnerInstance: c.inst}
		if err := st.CreateRun(ctx, &store.Session{Key: key, AgentID: "main", Kind: store.KindSubagent, Depth: 1}, nil, r); err != nil {
			t.Fatal(err)
		}
	}

	m := NewManager(New(cfg, st, nil))
	if m.host != "host-a" {
		t.Fatalf("manager host %q, want [cluster] host_id host-a", m.host)
	}
	if err := m.Start(ctx); err != nil { // Start recovers before it returns
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	for _, c := range cases {
		r, err := st.GetRun(ctx, "run-"+c.inst)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != c.wantState || !strings.Contains(r.Note, c.wantNote) {
			t.Errorf("run of %s (host %s, heartbeat %d ms old): state %s note %q, want %s with %q", c.inst, c.host, c.ageMS, r.State, r.Note, c.wantState, c.wantNote)
		}
		a, err := st.GetAnnounce(ctx, r.ID)
		switch {
		case c.wantState == store.RunUnknown && (err != nil || a.Status != store.RunUnknown):
			t.Errorf("run of %s: announce %+v, %v; want one with status unknown", c.inst, a, err)
		case c.wantState == store.RunRunning && err == nil:
			t.Errorf("run of %s is alive but was announced: %+v", c.inst, a)
		}
	}
}
