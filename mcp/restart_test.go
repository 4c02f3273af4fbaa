package mcp

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// A clean shutdown kills (and announces) the run in progress but leaves a
// queued run queued; the next server on the same database runs it, once.
func TestQueuedRunsSurviveShutdown(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	cfg, err := config.Parse([]byte(fmt.Sprintf(spawnConfig, "max_concurrent = 1")), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	open := func() (*store.Store, *Server) {
		st, err := store.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := Build(cfg, st, &BuildOptions{Providers: map[string]provider.Provider{"script": replyProvider{}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return st, srv
	}
	st, srv := open()
	first := mustSpawn(t, srv, "slow job")
	waitFor(t, "the first run to start", func() bool { r, _ := st.GetRun(ctx, first); return r.State == "running" })
	second := mustSpawn(t, srv, "hello")
	if r, _ := st.GetRun(ctx, second); r.State != "queued" {
		t.Fatalf("second run %s", r.State)
	}
	srv.Close()
	st.Close()

	st2, srv2 := open()
	defer st2.Close()
	defer srv2.Close()
	r1, _ := st2.GetRun(ctx, first)
	if r1.State != "killed" {
		t.Fatalf("run in progress at shutdown: %s", r1.State)
	}
	if a, err := st2.GetAnnounce(ctx, first); err != nil || a.Status != "killed" {
		t.Fatalf("shutdown kill not announced: %+v %v", a, err)
	}
	r2, err := srv2.Runs().Wait(ctx, second, 20*time.Second)
	if err != nil || r2.State != "ok" || r2.OwnerInstance != srv2.Runs().Instance() {
		t.Fatalf("queued run after restart: %+v %v", r2, err)
	}
}

func mustSpawn(t *testing.T, srv *Server, task string) string {
	t.Helper()
	res := srv.reg.Call(context.Background(), srv.Caller(), nil, "sessions_spawn", []byte(`{"task":"`+task+`"}`), nil)
	if res.IsError {
		t.Fatal(res.Text)
	}
	return res.Structured.(tools.SpawnOut).RunID
}
