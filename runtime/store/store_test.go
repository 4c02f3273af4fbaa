package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	if path == "" {
		path = testdb.DSN(t, "sp.db")
	}
	s, err := Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A database with every migration opens without a write transaction (one
// read decides); one missing the newest migration gets it in one write
// transaction, recorded once.
func TestMigrateWritesOnlyWhatIsPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sp.db")
	if testdb.Postgres() {
		path = testdb.DSN(t, "")
	}
	ctx := context.Background()
	s, err := Open(ctx, path, &Options{noTemplate: true}) // SQLite: by the migrations, not the template
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL migrates on a connection of its own, under an advisory
	// lock, not through the writer: only SQLite's counts are checked.
	sqlite := s.Backend() == BackendSQLite
	if w := s.WriteStats().Waited; sqlite && w != 1 {
		t.Fatalf("a new database: %d waited write transactions to migrate, want 1 (all migrations in one)", w)
	}
	s.Close()
	s2 := openTest(t, path)
	if w := s2.WriteStats().Waited; w != 0 {
		t.Fatalf("an up-to-date database: %d waited write transactions at open, want 0", w)
	}
	ms, _ := loadMigrations(s2.d.migrations)
	last := ms[len(ms)-1]
	// Undo the two newest migrations (0017: the insert trigger for older
	// releases' messages; 0016: the kept count of active children) as if
	// the file were made by the release before them, with runs in it: the
	// migrations fill the count from them.
	undo := []string{"DROP TRIGGER messages_fts_ai", "ALTER TABLE messages DROP COLUMN fts_deferred",
		"DROP TRIGGER run_children_insert", "DROP TRIGGER run_children_update", "DROP TRIGGER run_children_delete", "DROP TABLE run_children"}
	if !sqlite {
		undo = []string{"DROP TRIGGER run_children_count ON runs", "DROP FUNCTION run_children_count()", "DROP TABLE run_children"}
	}
	for _, q := range undo {
		if _, err := s2.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range []struct{ id, req, kind, state string }{
		{"m1", "agent:main:main", "spawn", RunQueued}, {"m2", "agent:main:main", "spawn", RunRunning},
		{"m3", "agent:main:main", "spawn", RunOK}, {"m4", "agent:main:main", "send", RunQueued},
		{"m5", "agent:main:x", "spawn", RunQueued}, {"m6", "agent:main:y", "spawn", RunInputRequired},
	} {
		run := &Run{ID: r.id, Kind: r.kind, ChildKey: fmt.Sprintf("agent:w:subagent:%d", i), RequesterKey: r.req, AgentID: "w", State: r.state}
		if err := s2.InsertRun(ctx, run); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s2.DB().ExecContext(ctx, s2.d.rebind("DELETE FROM schema_migrations WHERE version >= ?"), last.version-1); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	s3 := openTest(t, path)
	if w := s3.WriteStats().Waited; sqlite && w != 1 {
		t.Fatalf("a database two migrations behind: %d waited write transactions, want 1 (both in one)", w)
	}
	var n, newest int
	if err := s3.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &newest); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || newest != last.version || s3.SchemaVersion() != last.version {
		t.Fatalf("schema_migrations: %d rows up to %d (store at %d), want %d up to %d", n, newest, s3.SchemaVersion(), len(ms), last.version)
	}
	// The count is back, filled from the runs the file held, and kept.
	checkActive(t, s3, "migration "+last.name, map[string]int{"agent:main:main": 2, "agent:main:x": 1, "agent:main:y": 0})
	if ok, err := s3.KillRun(ctx, "m1", "", nil); err != nil || !ok {
		t.Fatalf("kill m1: %v %v", ok, err)
	}
	checkActive(t, s3, "a kill after the migration", map[string]int{"agent:main:main": 1})
}

func TestMigrationsEmptyAndReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "sp.db")
	if testdb.Postgres() {
		path = testdb.DSN(t, "")
	}
	s := openTest(t, path)
	if s.SchemaVersion() < 1 {
		t.Fatalf("schema version %d", s.SchemaVersion())
	}
	var n int
	if err := s.DB().QueryRow("SELECT max(version) FROM schema_migrations").Scan(&n); err != nil || n != s.SchemaVersion() {
		t.Fatalf("schema_migrations newest = %d (%v), want %d", n, err, s.SchemaVersion())
	}
	tables := []string{"sessions", "messages", "runs", "announces", "cron_jobs", "task_lists", "tasks", "task_events", "instances", "budget_usage", "approvals"}
	if s.Backend() == BackendSQLite {
		tables = append(tables, "messages_fts")
	}
	for _, table := range tables {
		if err := s.DB().QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
	if _, err := s.EnsureSession(context.Background(), Session{Key: "agent:main:main"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Reopen: nothing re-applied, data intact.
	s2 := openTest(t, path)
	var rows int
	if err := s2.DB().QueryRow("SELECT max(version), count(*) FROM schema_migrations").Scan(&n, &rows); err != nil || n != s2.SchemaVersion() || n != s.SchemaVersion() {
		t.Fatalf("after reopen schema_migrations newest = %d (%v), want %d", n, err, s.SchemaVersion())
	}
	if want, _ := loadMigrations(s2.d.migrations); rows != len(want) {
		t.Fatalf("after reopen schema_migrations has %d rows, want one per migration (%d)", rows, len(want))
	}
	if testdb.Postgres() {
		return // the rest is about the SQLite file
	}
	if _, err := s2.GetSession(context.Background(), "agent:main:main"); err != nil {
		t.Fatalf("session lost on reopen: %v", err)
	}
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", p, got, want)
		}
	}
	var mode string
	s2.DB().QueryRow("PRAGMA journal_mode").Scan(&mode)
	if mode != "wal" {
		t.Errorf("journal_mode %q", mode)
	}
}

func TestKindAndAgentOf(t *testing.T) {
	for _, c := range []struct{ key, kind, agent string }{
		{"agent:main:main", KindMain, "main"},
		{"agent:main:subagent:123", KindSubagent, "main"},
		{"agent:ops:subagent:1:subagent:2", KindSubagent, "ops"},
		{"cron:job1", KindCron, ""},
		{"agent:main:project-x", KindOther, "main"},
		{"whatever", KindOther, ""},
	} {
		if got := KindOf(c.key); got != c.kind {
			t.Errorf("KindOf(%q) = %s, want %s", c.key, got, c.kind)
		}
		if got := AgentOf(c.key); got != c.agent {
			t.Errorf("AgentOf(%q) = %s, want %s", c.key, got, c.agent)
		}
	}
}

func TestAppendOrderingBySeq(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	s.EnsureSession(ctx, Session{Key: "agent:a:main"})
	s.EnsureSession(ctx, Session{Key: "agent:b:main"})
	// Same created_at for all: order must come from seq alone.
	for i := 0; i < 30; i++ {
		key := "agent:a:main"
		if i%3 == 0 {
			key = "agent:b:main"
		}
		if _, err := s.AppendMessage(ctx, Message{SessionKey: key, Role: RoleUser, Trust: TrustUser, CreatedAt: 42,
			Content: Content{Text: fmt.Sprintf("m%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	msgs, total, err := s.History(ctx, HistoryQuery{Key: "agent:a:main", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if total != 20 || len(msgs) != 20 {
		t.Fatalf("total %d len %d", total, len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
	page, _, _ := s.History(ctx, HistoryQuery{Key: "agent:a:main", Limit: 5, Offset: 5})
	if page[0].Seq != 11 || page[4].Seq != 15 {
		t.Fatalf("offset page seqs %d..%d, want 11..15", page[0].Seq, page[4].Seq)
	}
	sess, _ := s.GetSession(ctx, "agent:a:main")
	if sess.MessageCount != 20 {
		t.Fatalf("message_count %d", sess.MessageCount)
	}
	if _, err := s.AppendMessage(ctx, Message{SessionKey: "agent:none:main", Role: RoleUser, Trust: TrustUser}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("append to missing session: %v", err)
	}
	if _, err := s.AppendMessage(ctx, Message{SessionKey: "agent:a:main", Role: "boss", Trust: TrustUser}); err == nil {
		t.Fatal("bad role accepted")
	}
}

func TestHistoryIncludeTools(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	s.EnsureSession(ctx, Session{Key: "k"})
	s.AppendMessages(ctx, []Message{
		{SessionKey: "k", Role: RoleUser, Trust: TrustUser, Content: Content{Text: "hi"}},
		{SessionKey: "k", Role: RoleAssistant, Trust: TrustModel, Content: Content{ToolCalls: []ToolCall{{ID: "1", Name: "x"}}}},
		{SessionKey: "k", Role: RoleTool, Trust: TrustExternal, Content: Content{ToolResults: []ToolResult{{CallID: "1", Name: "x", Content: "r"}}}},
		{SessionKey: "k", Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "done"}},
	})
	without, total, _ := s.History(ctx, HistoryQuery{Key: "k", Limit: 10})
	if total != 2 || len(without) != 2 || without[1].Content.Text != "done" {
		t.Fatalf("without tools: total %d %+v", total, without)
	}
	with, total, _ := s.History(ctx, HistoryQuery{Key: "k", Limit: 10, IncludeTools: true})
	if total != 4 || with[2].Content.ToolResults[0].Content != "r" {
		t.Fatalf("with tools: total %d %+v", total, with)
	}
}

func TestSearchRankingAndSnippet(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	s.EnsureSession(ctx, Session{Key: "agent:a:main", Label: "alpha"})
	s.EnsureSession(ctx, Session{Key: "agent:b:main", Label: "beta"})
	s.EnsureSession(ctx, Session{Key: "agent:c:main"})
	s.AppendMessages(ctx, []Message{
		{SessionKey: "agent:a:main", Role: RoleUser, Trust: TrustUser, Content: Content{Text: "we discussed a checkpoint once among many other unrelated topics like lunch, weather, travel plans and music"}},
		{SessionKey: "agent:b:main", Role: RoleAssistant, Trust: TrustModel, Content: Content{Text: "checkpoint rollback: the checkpoint rollback procedure restores the checkpoint"}},
		{SessionKey: "agent:c:main", Role: RoleUser, Trust: TrustUser, Content: Content{Text: "nothing relevant here"}},
		{SessionKey: "agent:c:main", Role: RoleTool, Trust: TrustExternal, Content: Content{ToolResults: []ToolResult{{Content: "checkpoint in a tool result"}}}},
	})
	var hits []Hit
	if err := s.Search(ctx, SearchQuery{Query: "checkpoint"}, func(h Hit) bool { hits = append(hits, h); return true }); err != nil {
		t.Fatal(err)
	}
	if len(hits) != 2 {
		t.Fatalf("hits %+v (tool results must not be indexed)", hits)
	}
	if hits[0].Key != "agent:b:main" || hits[0].Score <= hits[1].Score {
		t.Fatalf("ranking: %+v", hits)
	}
	if !strings.Contains(hits[0].Snippet, "[checkpoint]") || hits[0].Label != "beta" || hits[0].Role != RoleAssistant {
		t.Fatalf("snippet/label: %+v", hits[0])
	}
	hits = nil
	s.Search(ctx, SearchQuery{Query: "checkpoint", ExcludeKey: "agent:b:main"}, func(h Hit) bool { hits = append(hits, h); return true })
	if len(hits) != 1 || hits[0].Key != "agent:a:main" {
		t.Fatalf("exclude: %+v", hits)
	}
	// Whole words only, case-insensitive; FTS syntax in user input is literal.
	hits = nil
	s.Search(ctx, SearchQuery{Query: "rollb"}, func(h Hit) bool { hits = append(hits, h); return true })
	if len(hits) != 0 {
		t.Fatalf("prefix matched: %+v", hits)
	}
	s.Search(ctx, SearchQuery{Query: "ROLLBACK Checkpoint"}, func(h Hit) bool { hits = append(hits, h); return true })
	if len(hits) != 1 || hits[0].Key != "agent:b:main" {
		t.Fatalf("case-insensitive AND: %+v", hits)
	}
	for _, q := range []string{`"unbalanced`, "NEAR(a b)", "a AND OR", "*", "col:umn", "-x", "()"} {
		if err := s.Search(ctx, SearchQuery{Query: q}, func(Hit) bool { return true }); err != nil {
			t.Errorf("query %q: %v", q, err)
		}
	}
}

// Two handles on one file writing at once: every write lands, none fails.
func TestConcurrentWritersTwoHandles(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	a := openTest(t, path)
	b := openTest(t, path)
	ctx := context.Background()
	a.EnsureSession(ctx, Session{Key: "shared"})
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w, st := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func(w int, st *Store) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if _, err := st.AppendMessage(ctx, Message{SessionKey: "shared", Role: RoleUser, Trust: TrustUser,
					Content: Content{Text: fmt.Sprintf("w%d-%d", w, i)}}); err != nil {
					errs <- err
				}
			}
		}(w, st)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("write failed: %v", err)
	}
	msgs, total, _ := b.History(ctx, HistoryQuery{Key: "shared", Limit: -1})
	if total != 400 {
		t.Fatalf("total %d", total)
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("seq gap at %d: %d", i, m.Seq)
		}
	}
}

func TestUsageIncrementsAndTree(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	s.EnsureSession(ctx, Session{Key: "agent:m:main"})
	s.EnsureSession(ctx, Session{Key: "agent:m:subagent:1", ParentKey: "agent:m:main", Depth: 1})
	s.EnsureSession(ctx, Session{Key: "agent:m:subagent:1:subagent:2", ParentKey: "agent:m:subagent:1", Depth: 2})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.AddUsage(ctx, "agent:m:main", 10, 5, 0.5) }()
	}
	wg.Wait()
	sess, _ := s.GetSession(ctx, "agent:m:main")
	if sess.TokensIn != 200 || sess.TokensOut != 100 || sess.CostUSD != 10 {
		t.Fatalf("usage %+v", sess)
	}
	for _, c := range []struct {
		anc, key string
		want     bool
	}{
		{"agent:m:main", "agent:m:subagent:1", true},
		{"agent:m:main", "agent:m:subagent:1:subagent:2", true},
		{"agent:m:subagent:1", "agent:m:main", false},
		{"agent:x:main", "agent:m:subagent:1", false},
	} {
		got, err := s.IsDescendant(ctx, c.anc, c.key)
		if err != nil || got != c.want {
			t.Errorf("IsDescendant(%s, %s) = %v, %v", c.anc, c.key, got, err)
		}
	}
	owner, ok, _ := s.Owner(ctx, "agent:m:subagent:1")
	if owner != "m" || !ok {
		t.Fatalf("owner %q %v", owner, ok)
	}
	if _, ok, _ := s.Owner(ctx, "nope"); ok {
		t.Fatal("owner of missing session")
	}
	kids, _ := s.Children(ctx, "agent:m:main")
	if len(kids) != 1 {
		t.Fatalf("children %v", kids)
	}
	s.Archive(ctx, "agent:m:subagent:1")
	var listed []string
	s.ListSessions(ctx, ListFilter{}, func(x *Session) bool { listed = append(listed, x.Key); return true })
	if len(listed) != 2 {
		t.Fatalf("archived session listed by default: %v", listed)
	}
	listed = nil
	s.ListSessions(ctx, ListFilter{IncludeArchived: true, Kinds: []string{KindSubagent}}, func(x *Session) bool { listed = append(listed, x.Key); return true })
	if len(listed) != 2 {
		t.Fatalf("includeArchived+kinds: %v", listed)
	}
}

// A match older than the first ranking window is still reached when the
// caller filters out everything newer (policy filters before the limit).
func TestSearchReachesOlderWindows(t *testing.T) {
	defer func(w int) { rankWindow = w }(rankWindow)
	rankWindow = 40
	s := openTest(t, "")
	ctx := context.Background()
	s.EnsureSession(ctx, Session{Key: "old"})
	s.EnsureSession(ctx, Session{Key: "new"})
	s.AppendMessage(ctx, Message{SessionKey: "old", Role: RoleUser, Trust: TrustUser, Content: Content{Text: "common word here"}})
	batch := make([]Message, rankWindow+500)
	for i := range batch {
		batch[i] = Message{SessionKey: "new", Role: RoleUser, Trust: TrustUser, Content: Content{Text: fmt.Sprintf("common %d", i)}}
	}
	if err := s.AppendMessages(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var got []Hit
	seen := 0
	err := s.Search(ctx, SearchQuery{Query: "common"}, func(h Hit) bool {
		seen++
		if h.Key == "old" {
			got = append(got, h)
			return false
		}
		return true
	})
	if err != nil || len(got) != 1 || seen != rankWindow+501 {
		t.Fatalf("older window: got %v after %d hits (%v)", got, seen, err)
	}
}

// Group commit: writes queued together share a transaction, but a write
// that fails rolls back only its own changes, and a cancelled caller does
// not fail the others.
func TestGroupCommitIsolation(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	s.EnsureSession(ctx, Session{Key: "k"})
	var wg sync.WaitGroup
	errs := make([]error, 60)
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cctx := ctx
			if i%10 == 5 {
				c, cancel := context.WithCancel(ctx)
				cancel()
				cctx = c
			}
			role := RoleUser
			if i%10 == 3 {
				role = "bogus" // rejected before the write
			}
			errs[i] = s.Tx(cctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(cctx, `INSERT INTO task_lists (name, created_by, created_at) VALUES (?, 'x', 0)`, fmt.Sprintf("l%d", i)); err != nil {
					return err
				}
				if i%10 == 7 {
					return errors.New("handler failed after writing")
				}
				_ = role
				return nil
			})
		}(i)
	}
	wg.Wait()
	var n int
	s.DB().QueryRow(`SELECT count(*) FROM task_lists`).Scan(&n)
	want := 0
	for i, err := range errs {
		switch i % 10 {
		case 5, 7:
			if err == nil {
				t.Errorf("write %d: want an error", i)
			}
		default:
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
			want++
		}
	}
	if n != want {
		t.Fatalf("%d lists committed, want %d (failed writes must roll back only themselves)", n, want)
	}
}

func TestTokensFoldLikeFTS(t *testing.T) {
	got := strings.Join(tokens("Café CRÈME, naïve_user x2 -- Ünïcode"), " ")
	if got != "cafe creme naive_user x2 unicode" {
		t.Fatalf("tokens: %q", got)
	}
	if q := strings.Join(queryTerms("Deploy deploy DÉPLOY"), ","); q != "deploy" {
		t.Fatalf("query terms: %q", q)
	}
}

func TestWritePanicFailsOnlyThatWrite(t *testing.T) {
	s := openTest(t, "")
	err := s.Tx(context.Background(), func(tx *sql.Tx) error { panic("bug in a write") })
	if err == nil || !strings.Contains(err.Error(), "bug in a write") {
		t.Fatalf("panicking write: %v", err)
	}
	if _, err := s.EnsureSession(context.Background(), Session{Key: "after"}); err != nil {
		t.Fatalf("writer dead after a panic: %v", err)
	}
}

func TestOpenADirectorySaysSo(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(context.Background(), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "is a directory") || !strings.Contains(err.Error(), "sessionplane.db") {
		t.Fatalf("Open(a directory) = %v, want it to say it is a directory and what to name", err)
	}
}

// Searches run concurrently (child agents, several clients): folding their
// words must not share a transformer's state (go test -race).
func TestTokensConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				if got := tokens("Ça déploie l'été"); strings.Join(got, " ") != "ca deploie l ete" {
					t.Errorf("tokens = %q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A text with a NUL character is stored on both backends (PostgreSQL's
// text type cannot hold NUL: there each becomes U+FFFD), in a message and
// in any other text column, and the write is acknowledged.
func TestNULCharacterIsStoredOnEitherBackend(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, testdb.DSN(t, "nul.db"))
	if _, err := s.EnsureSession(ctx, Session{Key: "agent:main:x", Label: "l\x00l"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendMessage(ctx, Message{SessionKey: "agent:main:x", Role: RoleUser, Trust: TrustUser, Content: Content{Text: "find\x00me"}}); err != nil {
		t.Fatalf("append with NUL on %s: %v", s.Backend(), err)
	}
	nul := "\x00"
	if s.Backend() == BackendPostgres {
		nul = "\uFFFD"
	}
	var body, label string
	if err := s.db.QueryRow("SELECT body FROM messages WHERE session_key = ?", "agent:main:x").Scan(&body); err != nil || body != "find"+nul+"me" {
		t.Fatalf("body %q %v", body, err)
	}
	if err := s.db.QueryRow("SELECT label FROM sessions WHERE key = ?", "agent:main:x").Scan(&label); err != nil || label != "l"+nul+"l" {
		t.Fatalf("label %q %v", label, err)
	}
}

// Writes after Close return ErrClosed, never hang: a send into the write
// queue may win the race against the closed stop channel after the writer
// has drained the queue and exited.
func TestTxAfterCloseNeverHangs(t *testing.T) {
	s := openTest(t, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 2000; i++ {
		err := s.Tx(ctx, func(*sql.Tx) error { return nil })
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("write %d after Close: %v, want ErrClosed", i, err)
		}
	}
}

// A write whose statement is not cached yet, made while its transaction
// holds the pool's only connection, runs on that connection: caching the
// statement does not open a second one on the write's path. Its next use
// caches it.
func TestFirstWriteOpensNoConnection(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "")
	before := s.DB().Stats().OpenConnections
	if err := s.RegisterInstance(ctx, Instance{ID: "i1", PID: 1, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if after := s.DB().Stats().OpenConnections; s.Backend() == BackendSQLite && after != before {
		t.Fatalf("open connections %d → %d across the first write, want no new one", before, after)
	}
	const q = "UPDATE instances SET heartbeat_at = heartbeat_at WHERE id = ?"
	if _, ok := s.stmts.Load(q); ok {
		t.Fatal("statement cached before its first use")
	}
	for i := 0; i < 2; i++ {
		if err := s.Tx(ctx, func(tx *sql.Tx) error { _, err := s.exec(ctx, tx, q, "i1"); return err }); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.readRow(ctx, "SELECT count(*) FROM instances WHERE id = ?", "i1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("instance rows %d %v, want 1", n, err)
	}
	// Its second use cached it.
	if _, ok := s.stmts.Load(q); !ok {
		t.Fatal("statement not cached at its second use")
	}
}

// The session list's query does not watch its context (briefRead), yet a
// cancelled list stops: it yields nothing and returns the context's error.
func TestListSessionsStopsWhenCancelled(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	for _, k := range []string{"agent:main:a", "agent:main:b", "agent:main:c"} {
		if _, err := s.EnsureSession(ctx, Session{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	n := 0
	err := s.ListSessions(cctx, ListFilter{}, func(*Session) bool { n++; return true })
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Fatalf("cancelled list: %d yielded, err %v; want 0 and context.Canceled", n, err)
	}
	if err := s.ListSessions(ctx, ListFilter{}, func(*Session) bool { n++; return true }); err != nil || n != 3 {
		t.Fatalf("list: %d yielded, err %v; want 3", n, err)
	}
}

// A brief list (ListFilter.Brief) yields the same sessions in the same
// order as a full one, each with every field a list shows and the six it
// does not read left zero.
func TestListSessionsBrief(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	for _, in := range []Session{
		{Key: "agent:m:main", Label: "main one", Model: "m1", Thinking: "high", Preset: "p"},
		{Key: "agent:m:subagent:a", ParentKey: "agent:m:main", Depth: 1, Label: "kid", SpawnedBy: "agent:m:main", Model: "m2"},
		{Key: "cron:nightly", Model: "m3"},
	} {
		if _, err := s.EnsureSession(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DB().ExecContext(ctx, `UPDATE sessions SET model_served = 'm2-served', forked_from = 'agent:m:main', forked_at_seq = 3,
		message_count = 4, tokens_in = 10, tokens_out = 5, cost_usd = 0.5, updated_at = updated_at + 7 WHERE key = 'agent:m:subagent:a'`); err != nil {
		t.Fatal(err)
	}
	s.Archive(ctx, "cron:nightly")
	for _, f := range []ListFilter{{}, {IncludeArchived: true}, {Text: "KID"}} {
		var full, brief []Session
		s.ListSessions(ctx, f, func(x *Session) bool { full = append(full, *x); return true })
		f.Brief = true
		if err := s.ListSessions(ctx, f, func(x *Session) bool { brief = append(brief, *x); return true }); err != nil {
			t.Fatal(err)
		}
		for i := range full {
			full[i].Depth, full[i].Thinking, full[i].Preset, full[i].ModelServed, full[i].ForkedFrom, full[i].ForkedAtSeq = 0, "", "", "", "", 0
		}
		if len(full) == 0 || !reflect.DeepEqual(brief, full) {
			t.Fatalf("filter %+v: brief list\n%+v\nwant\n%+v", f, brief, full)
		}
	}
}
