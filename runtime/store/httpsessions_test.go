package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// Two handles on one database (two instances) creating sessions at once
// never exceed the cap between them; touch, expiry and delete are seen by
// both.
func TestHTTPSessionsAcrossHandles(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.DSN(t, "sp.db")
	var handles []*Store
	for i := 0; i < 2; i++ {
		st, err := Open(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		handles = append(handles, st)
	}
	a, b := handles[0], handles[1]
	const max, tries = 5, 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for i := 0; i < tries; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := HTTPSession{ID: fmt.Sprintf("s%d", i), Principal: "alice", AgentID: "main", OwnSession: "agent:main:main",
				ClientInfo: `{"name":"c"}`, CreatedAt: 1000, LastSeen: 1000}
			ok, err := handles[i%2].CreateHTTPSession(ctx, h, max, 0)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				created++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if created != max {
		t.Fatalf("%d sessions created by two handles under a cap of %d", created, max)
	}
	live, err := b.LiveHTTPSessions(ctx, 0)
	if err != nil || len(live) != max {
		t.Fatalf("live sessions seen by the other handle: %v %v", live, err)
	}
	id := live[0]
	got, err := b.HTTPSessionByID(ctx, id)
	if err != nil || got.Principal != "alice" || got.OwnSession != "agent:main:main" || got.ClientInfo != `{"name":"c"}` {
		t.Fatalf("read back: %+v %v", got, err)
	}
	if err := a.TouchHTTPSessions(ctx, []string{id}, 5000); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchHTTPSessions(ctx, []string{id}, 4000); err != nil { // never back
		t.Fatal(err)
	}
	if err := b.ExpireHTTPSessions(ctx, 2000); err != nil {
		t.Fatal(err)
	}
	if live, _ := a.LiveHTTPSessions(ctx, 0); len(live) != 1 || live[0] != id {
		t.Fatalf("after expiring everything last seen before 2000: %v, want only the touched %s", live, id)
	}
	if got, _ := a.HTTPSessionByID(ctx, id); got.LastSeen != 5000 {
		t.Fatalf("last_seen %d, want 5000", got.LastSeen)
	}
	if ok, err := b.DeleteHTTPSession(ctx, id); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, _ := a.DeleteHTTPSession(ctx, id); ok {
		t.Fatal("a second delete reported a session")
	}
	if _, err := a.HTTPSessionByID(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted session: %v, want ErrNotFound", err)
	}
}
