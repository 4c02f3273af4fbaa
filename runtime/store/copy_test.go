package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

// copyTarget is the database a plane is copied into: a fresh PostgreSQL
// schema when the suite has a server, else a new SQLite file.
func copyTarget(t *testing.T) string {
	t.Helper()
	if base := os.Getenv(testdb.Env); base != "" {
		return testdb.Schema(t, base)
	}
	return filepath.Join(t.TempDir(), "target.db")
}

// seedPlane fills s with a little of everything Copy moves, in page-sized
// amounts small enough to cross several pages with tiny batches.
func seedPlane(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	main := "agent:main:main"
	if _, err := s.EnsureSession(ctx, Session{Key: main, Label: "Café Zürich"}); err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	for i := 0; i < 25; i++ {
		msgs = append(msgs, Message{SessionKey: main, Role: RoleUser, Trust: TrustUser, TokensIn: int64(i),
			Content: Content{Text: fmt.Sprintf("message %d: le déploiement à Zürich, naïve café señor %d", i, i*7)}})
	}
	msgs = append(msgs, Message{SessionKey: main, Role: RoleTool, Trust: TrustExternal,
		Content: Content{ToolResults: []ToolResult{{CallID: "c1", Name: "x", Content: "untold"}}}})
	if err := s.AppendMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ForkSession(ctx, Session{Key: "agent:main:fork:1", ForkedFrom: main, ForkedAtSeq: 10}); err != nil {
		t.Fatal(err)
	}
	r := &Run{ID: "run-1", ChildKey: "agent:w:subagent:1", RequesterKey: main, AgentID: "w", Task: "résumé"}
	if err := s.CreateRun(ctx, &Session{Key: r.ChildKey}, []Message{{SessionKey: "agent:w:subagent:1", Role: RoleUser, Trust: TrustControl, Content: Content{Text: "résumé the plan"}}}, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishRun(ctx, r.ID, Outcome{State: RunOK, ResultText: "done"}, &Announce{RunID: r.ID, RequesterKey: main, Status: RunOK, Body: "run-1 done"}); err != nil {
		t.Fatal(err)
	}
	// An active spawn: the target counts it as its requester's child.
	r2 := &Run{ID: "run-2", Kind: "spawn", ChildKey: "agent:w:subagent:2", RequesterKey: main, AgentID: "w", Task: "queued"}
	if err := s.InsertRun(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertCronJob(ctx, &CronJob{ID: "cron-1", Name: "nightly", Schedule: "every:1h", Timezone: "UTC", Payload: `{"message":"ping"}`, CreatorKey: main, Enabled: true, NextRunAt: 5}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		if _, err := s.CreateTask(ctx, &Task{List: "l", Title: fmt.Sprintf("task %d", i)}, main); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.OpenBudgetScope(ctx, "day:2026-11-30", 1000, 2.5); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBudgetUsage(ctx, []string{"day:2026-11-30"}, 12, 0.25); err != nil {
		t.Fatal(err)
	}
}

// dump reads every copied table, column for column, in key order.
func dump(t *testing.T, s *Store) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range copyTables {
		cols, err := s.columns(context.Background(), tb.name)
		if err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, c := range cols {
			if tb.name != "messages" || c != s.d.indexCol { // how the backend indexes a row is not data
				keep = append(keep, c)
			}
		}
		rows, err := s.db.Query("SELECT " + strings.Join(keep, ", ") + " FROM " + tb.name + " ORDER BY " + tb.key)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]any, len(keep))
			ptrs := make([]any, len(keep))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					vals[i] = string(b)
				}
				if f, ok := v.(float64); ok && f == float64(int64(f)) && (keep[i] != "cost_usd" && keep[i] != "usd" && keep[i] != "limit_usd") {
					vals[i] = int64(f)
				}
			}
			out[tb.name] = append(out[tb.name], fmt.Sprint(vals))
		}
		rows.Close()
	}
	return out
}

// A plane copied from SQLite holds the same rows, column for column, finds
// the same hits, and carries on: the next message gets the next seq and
// the next task id is past the copied ones.
func TestCopyPlaneKeepsEveryRow(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, filepath.Join(t.TempDir(), "source.db"))
	seedPlane(t, src)
	dst := openTest(t, copyTarget(t))
	var pages int
	res, err := Copy(ctx, src, dst, &CopyOptions{BatchRows: 4, Progress: func(table string, done, total int64) {
		pages++
		if done > total {
			t.Errorf("%s: %d of %d rows", table, done, total)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if pages < 7 {
		t.Fatalf("%d pages of 4 rows for 26+ messages: not paged", pages)
	}
	if got, want := dump(t, dst), dump(t, src); !reflect.DeepEqual(got, want) {
		for k := range want {
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("table %s differs:\n got %v\nwant %v", k, got[k], want[k])
			}
		}
	}
	// run_children is not copied: the target's triggers count the copied runs.
	srcKept, _ := activeCounts(t, src)
	if srcKept["agent:main:main"] != 1 {
		t.Fatalf("the source counts %v active children, want agent:main:main: 1", srcKept)
	}
	checkActive(t, dst, "the copy", srcKept)
	if len(res.Searches) == 0 || res.Searches[0].Hits == 0 {
		t.Fatalf("no sample search verified the index: %+v", res.Searches)
	}
	for _, q := range []string{"deploiement zurich", "CAFÉ", "résumé plan", "untold"} {
		a, _ := hitSet(ctx, src, q)
		b, err := hitSet(ctx, dst, q)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("search %q: source %v, target %v (%v)", q, a, b, err)
		}
	}
	var last int64
	if err := src.db.QueryRow("SELECT max(seq) FROM messages WHERE session_key = 'agent:main:main'").Scan(&last); err != nil {
		t.Fatal(err)
	}
	seq, err := dst.AppendMessage(ctx, Message{SessionKey: "agent:main:main", Role: RoleUser, Trust: TrustUser, Content: Content{Text: "after the move"}})
	if err != nil || seq != last+1 {
		t.Fatalf("next message on the target: seq %d (%v), want %d", seq, err, last+1)
	}
	task := &Task{List: "l", Title: "after the move"}
	if _, err := dst.CreateTask(ctx, task, "agent:main:main"); err != nil || task.ID != 8 {
		t.Fatalf("next task on the target: id %d (%v), want 8", task.ID, err)
	}
	var maxMsg, newID int64
	if err := dst.db.QueryRow("SELECT max(id) FROM messages WHERE body != 'after the move'").Scan(&maxMsg); err != nil {
		t.Fatal(err)
	}
	if err := dst.db.QueryRow("SELECT id FROM messages WHERE body = 'after the move'").Scan(&newID); err != nil || newID <= maxMsg {
		t.Fatalf("the new message got id %d, not past the copied %d (%v)", newID, maxMsg, err)
	}
}

// The reverse direction comes from the same code: PostgreSQL (or, on an
// SQLite-only run, SQLite) back to a new SQLite file.
func TestCopyBackToSQLite(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, testdb.DSN(t, "source.db"))
	seedPlane(t, src)
	dst := openTest(t, filepath.Join(t.TempDir(), "back.db"))
	if _, err := Copy(ctx, src, dst, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, dst), dump(t, src); !reflect.DeepEqual(got, want) {
		t.Fatalf("the copy differs:\n got %v\nwant %v", got, want)
	}
	if dst.Backend() != BackendSQLite {
		t.Fatalf("target backend %s", dst.Backend())
	}
}

// A target holding a plane is refused before anything is written, with
// how to empty it; so is a source a server is running on, unless told.
func TestCopyRefusals(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, filepath.Join(t.TempDir(), "source.db"))
	seedPlane(t, src)

	full := openTest(t, copyTarget(t))
	if _, err := full.EnsureSession(ctx, Session{Key: "agent:main:other"}); err != nil {
		t.Fatal(err)
	}
	_, err := Copy(ctx, src, full, nil)
	if !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), "table sessions") || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("copy into a non-empty target: %v", err)
	}
	if n, _ := full.count(ctx, "messages"); n != 0 {
		t.Fatalf("the refused copy wrote %d messages", n)
	}

	if err := src.RegisterInstance(ctx, Instance{ID: "inst-1", PID: 4242, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	empty := openTest(t, copyTarget(t))
	_, err = Copy(ctx, src, empty, nil)
	if !errors.Is(err, ErrSourceInUse) || !strings.Contains(err.Error(), "inst-1") || !strings.Contains(err.Error(), "--ignore-running") {
		t.Fatalf("copy of a running source: %v", err)
	}
	if n, _ := empty.count(ctx, "sessions"); n != 0 {
		t.Fatalf("the refused copy wrote %d sessions", n)
	}
	if _, err := Copy(ctx, src, empty, &CopyOptions{IgnoreRunning: true}); err != nil {
		t.Fatalf("with IgnoreRunning: %v", err)
	}
	if n, _ := empty.count(ctx, "instances"); n != 0 {
		t.Fatalf("%d instance rows copied: they belong to the source's processes", n)
	}
}

// A table Copy does not know (a later migration that forgot to decide)
// makes it refuse instead of leaving data behind.
func TestCopyRefusesAnUnknownTable(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, filepath.Join(t.TempDir(), "source.db"))
	if _, err := src.db.Exec("CREATE TABLE widgets (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	_, err := Copy(ctx, src, openTest(t, copyTarget(t)), nil)
	if err == nil || !strings.Contains(err.Error(), "table widgets") {
		t.Fatalf("copy with an unknown table: %v", err)
	}
}

// Every table of both schemas is either copied or left out on purpose.
func TestCopyKnowsEveryTable(t *testing.T) {
	for _, dsn := range []string{filepath.Join(t.TempDir(), "a.db"), testdb.DSN(t, "b.db")} {
		s := openTest(t, dsn)
		if err := s.checkTablesKnown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// A row the target refuses fails the copy with the table and the row's
// key named, and pages stay bounded by bytes as well as rows.
func TestCopyNamesTheRowAtFault(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, filepath.Join(t.TempDir(), "source.db"))
	seedPlane(t, src)
	dst := openTest(t, filepath.Join(t.TempDir(), "target.db"))
	if _, err := dst.db.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON tasks WHEN new.title = 'task 5'
		BEGIN SELECT RAISE(ABORT, 'no task 5 here'); END`); err != nil {
		t.Fatal(err)
	}
	pages := map[string]int{}
	_, err := Copy(ctx, src, dst, &CopyOptions{BatchBytes: 1, Progress: func(table string, done, total int64) { pages[table]++ }})
	if err == nil || !strings.Contains(err.Error(), "table tasks, row id = 6") || !strings.Contains(err.Error(), "no task 5 here") ||
		!strings.Contains(err.Error(), "partial copy") {
		t.Fatalf("copy with a refused row: %v", err)
	}
	if pages["sessions"] != 3 || pages["tasks"] != 5 {
		t.Fatalf("pages of one row each (BatchBytes 1): %v", pages)
	}
}

// A NUL character, which SQLite stores and PostgreSQL's text type cannot
// hold, copies as is between SQLite files and becomes U+FFFD on
// PostgreSQL: the copy succeeds either way (nothing is refused).
func TestCopyNULBecomesReplacementOnPostgres(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, filepath.Join(t.TempDir(), "source.db"))
	if _, err := src.EnsureSession(ctx, Session{Key: "agent:main:main"}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.AppendMessage(ctx, Message{SessionKey: "agent:main:main", Role: RoleUser, Trust: TrustUser, Content: Content{Text: "a\x00b"}}); err != nil {
		t.Fatal(err)
	}
	dst := openTest(t, copyTarget(t))
	if _, err := Copy(ctx, src, dst, nil); err != nil {
		t.Fatalf("copy of a NUL to %s: %v", dst.Backend(), err)
	}
	want := "a\x00b"
	if dst.Backend() == BackendPostgres {
		want = "a\uFFFDb"
	}
	var body string
	if err := dst.db.QueryRow("SELECT body FROM messages WHERE id = 1").Scan(&body); err != nil || body != want {
		t.Fatalf("body after copy to %s: %q %v, want %q", dst.Backend(), body, err, want)
	}
}
