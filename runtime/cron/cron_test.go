package cron

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// clock is a fake clock shared by schedulers in a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// firings records what a fake fire function was asked to start.
type firings struct {
	mu    sync.Mutex
	jobs  []Job
	n     int
	fail  error
	onRun func(Job) string // run id to return (default run-N)
	ch    chan Job
}

func (f *firings) fire(_ context.Context, j Job) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.jobs = append(f.jobs, j)
	f.n++
	id := fmt.Sprintf("run-%d", f.n)
	if f.onRun != nil {
		id = f.onRun(j)
	}
	if f.ch != nil {
		f.ch <- j
	}
	return id, nil
}

func (f *firings) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.jobs)
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func turn(msg string) Payload { return Payload{Kind: PayloadAgentTurn, Message: msg} }

var t0 = time.Date(2026, 3, 7, 15, 0, 0, 0, time.UTC)

func TestParseScheduleErrors(t *testing.T) {
	tests := []struct {
		schedule, tz string
		want         string
	}{
		{"", "", "job.schedule: empty"},
		{"* * * *", "", `job.schedule: "* * * *" has 4 fields`},
		{"0 * * * * *", "", "has 6 fields"},
		{"61 * * * *", "", "job.schedule: \"61 * * * *\" is not a valid cron expression"},
		{"0 25 * * *", "", "hour field"},
		{"a b c d e", "", "is not a valid cron expression"},
		{"@everysecond", "", "has 1 fields"},
		{"every:soon", "", "job.schedule: every:soon: \"soon\" is not a Go duration"},
		{"every:5s", "", "job.schedule: every:5s is shorter than the minimum interval 10s"},
		{"every:-1m", "", "must be positive"},
		{"at:tomorrow", "", "job.schedule: at:tomorrow is not an RFC3339 time"},
		{"0 9 * * *", "Mars/Olympus", `job.timezone: unknown time zone "Mars/Olympus"`},
		{"0 9 * * *", "Local", `job.timezone: "Local" depends on the server's host`},
	}
	for _, tc := range tests {
		_, err := ParseSchedule(tc.schedule, tc.tz, DefaultMinEvery)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSchedule(%q, %q) = %v, want an error containing %q", tc.schedule, tc.tz, err, tc.want)
		}
	}
	for _, ok := range []string{"*/5 * * * *", "0 9 * * MON-FRI", "@daily", "every:10s", "every:1h30m", "at:2026-12-01T09:00:00+01:00"} {
		if _, err := ParseSchedule(ok, "Europe/Paris", DefaultMinEvery); err != nil {
			t.Errorf("ParseSchedule(%q) = %v", ok, err)
		}
	}
	if _, err := ParseSchedule("every:100ms", "", 0); err != nil {
		t.Errorf("no minimum for stored jobs: %v", err)
	}
}

func TestPayloadValidate(t *testing.T) {
	tests := []struct {
		p    Payload
		want string
	}{
		{Payload{Kind: "shell", Message: "x"}, `job.payload.kind: "shell" is not supported`},
		{Payload{Kind: PayloadAgentTurn, Message: "  "}, "job.payload.message: empty"},
		{Payload{Kind: PayloadAgentTurn, Message: "x", TimeoutSecs: -1}, "job.payload.timeout_secs"},
		{Payload{Kind: PayloadAgentTurn, Message: "x", ActiveTools: []string{"a"}, ToolChoice: &policy.Choice{Type: "tool", Name: "b"}},
			`job.payload.tool_choice: forced tool "b" is not in active_tools`},
		{Payload{Kind: PayloadAgentTurn, Message: "x", ToolChoice: &policy.Choice{Type: "tool"}}, "job.payload.tool_choice: tool_choice type \"tool\" needs a name"},
		{Payload{Kind: PayloadAgentTurn, Message: "x", ToolChoice: &policy.Choice{Type: "maybe"}}, "job.payload.tool_choice"},
		{Payload{Kind: PayloadAgentTurn, Message: "x", ActiveTools: []string{"a"}, ToolChoice: &policy.Choice{Type: "tool", Name: "a"}}, ""},
	}
	for _, tc := range tests {
		err := tc.p.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.p, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.p, err, tc.want)
		}
	}
}

func TestNextAcrossTimeZones(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name       string
		expr       string
		loc        *time.Location
		prev, now  string
		want       string
		wantNoNext bool
	}{
		// 09:00 in New York is 14:00Z before the DST change of 2026-03-08 and 13:00Z after it.
		{"NY before DST", "0 9 * * *", ny, "", "2026-03-07T12:00:00Z", "2026-03-07T14:00:00Z", false},
		{"NY across DST", "0 9 * * *", ny, "", "2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z", false},
		{"Paris weekday", "30 8 * * 1-5", paris, "", "2026-06-05T07:00:00Z", "2026-06-08T06:30:00Z", false}, // Fri after 08:30 → Mon
		{"UTC", "*/15 * * * *", time.UTC, "", "2026-06-05T07:00:00Z", "2026-06-05T07:15:00Z", false},
		// 01:30 happens twice in New York on 2026-11-01 (fall back): fired once.
		{"NY fall back once", "30 1 * * *", ny, "2026-11-01T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z", false},
	}
	for _, tc := range tests {
		s := Schedule{Kind: KindCron, Expr: tc.expr, Loc: tc.loc}
		var prev time.Time
		if tc.prev != "" {
			prev = at(tc.prev)
		}
		got, ok, err := s.Next(prev, at(tc.now))
		if err != nil || !ok || !got.Equal(at(tc.want)) {
			t.Errorf("%s: Next = %v %v %v, want %s", tc.name, got.UTC(), ok, err, tc.want)
		}
	}
	if _, _, err := (Schedule{Kind: KindCron, Expr: "0 0 30 2 *", Loc: time.UTC}).Next(time.Time{}, t0); err == nil || !strings.Contains(err.Error(), "never matches") {
		t.Errorf("Feb 30: %v", err)
	}
	// every: keeps its phase; at: is one shot.
	every := Schedule{Kind: KindEvery, Every: time.Minute}
	if got, _, _ := every.Next(t0, t0.Add(150*time.Second)); !got.Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("every phase: %v", got)
	}
	one := Schedule{Kind: KindAt, At: t0.Add(time.Hour)}
	if got, ok, _ := one.Next(time.Time{}, t0); !ok || !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("at first: %v %v", got, ok)
	}
	if _, ok, _ := one.Next(t0.Add(time.Hour), t0.Add(time.Hour)); ok {
		t.Error("at: fired one-shot has a next run")
	}
}

func newScheduler(t *testing.T, st *store.Store, c *clock, f *firings) *Scheduler {
	t.Helper()
	s := New(st, f.fire, &Options{Now: c.Now, Tick: time.Hour})
	t.Cleanup(func() { s.Close() })
	return s
}

func runDue(t *testing.T, s *Scheduler) int {
	t.Helper()
	n, err := s.RunDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSchedulerEveryAndCronExpression(t *testing.T) {
	st := openStore(t, testdb.DSN(t, "sp.db"))
	c := newClock(t0) // 2026-03-07 15:00Z = 10:00 in New York
	f := &firings{}
	s := newScheduler(t, st, c, f)
	ctx := context.Background()
	every, err := s.Add(ctx, "agent:main:main", Spec{Name: "tick", Schedule: "every:1m", Payload: turn("tick")})
	if err != nil {
		t.Fatal(err)
	}
	if !every.NextRun.Equal(t0.Add(time.Minute)) || every.Timezone != "UTC" || !every.Enabled {
		t.Fatalf("every job: %+v", every)
	}
	daily, err := s.Add(ctx, "agent:main:main", Spec{Name: "ny", Schedule: "0 9 * * *", Timezone: "America/New_York", Payload: turn("report")})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 8, 13, 0, 0, 0, time.UTC); !daily.NextRun.Equal(want) { // 09:00 EDT, after the DST change
		t.Fatalf("daily next %v, want %v", daily.NextRun.UTC(), want)
	}
	if n := runDue(t, s); n != 0 {
		t.Fatalf("fired %d before anything was due", n)
	}
	c.Advance(59 * time.Second)
	if n := runDue(t, s); n != 0 {
		t.Fatalf("fired %d early", n)
	}
	c.Advance(time.Second)
	if n := runDue(t, s); n != 1 {
		t.Fatalf("fired %d at the first minute", n)
	}
	if n := runDue(t, s); n != 0 {
		t.Fatalf("fired the same occurrence again (%d)", n)
	}
	got, _ := s.Get(ctx, every.ID)
	if !got.NextRun.Equal(t0.Add(2*time.Minute)) || !got.LastRun.Equal(t0.Add(time.Minute)) || got.LastRunID != "run-1" || got.RunCount != 1 || got.LastNote != "" {
		t.Fatalf("after the first run: %+v", got)
	}
	// Jump to 09:00 New York time the next day: the daily job and one catch-up of the minute job.
	c.Set(time.Date(2026, 3, 8, 13, 0, 0, 0, time.UTC))
	if n := runDue(t, s); n != 2 {
		t.Fatalf("fired %d at 09:00 New York", n)
	}
	got, _ = s.Get(ctx, daily.ID)
	if want := time.Date(2026, 3, 9, 13, 0, 0, 0, time.UTC); !got.NextRun.Equal(want) {
		t.Fatalf("daily next %v, want %v", got.NextRun.UTC(), want)
	}
	if f.jobs[0].ID != every.ID || f.jobs[0].Payload.Message != "tick" || f.jobs[0].CreatorKey != "agent:main:main" {
		t.Fatalf("fired job: %+v", f.jobs[0])
	}
}

func TestSchedulerAtIsOneShot(t *testing.T) {
	st := openStore(t, testdb.DSN(t, "sp.db"))
	c := newClock(t0)
	f := &firings{}
	s := newScheduler(t, st, c, f)
	ctx := context.Background()
	if _, err := s.Add(ctx, "agent:main:main", Spec{Name: "past", Schedule: "at:2026-03-07T14:00:00Z", Payload: turn("x")}); err == nil ||
		!strings.Contains(err.Error(), "job.schedule: at:2026-03-07T14:00:00Z is not in the future") {
		t.Fatalf("at in the past: %v", err)
	}
	j, err := s.Add(ctx, "agent:main:main", Spec{Name: "once", Schedule: "at:2026-03-07T16:30:00+01:00", Payload: turn("once")})
	if err != nil {
		t.Fatal(err)
	}
	if !j.NextRun.Equal(t0.Add(30 * time.Minute)) {
		t.Fatalf("next %v", j.NextRun)
	}
	c.Advance(30 * time.Minute)
	if n := runDue(t, s); n != 1 {
		t.Fatalf("fired %d", n)
	}
	got, _ := s.Get(ctx, j.ID)
	if got.Enabled || !got.NextRun.IsZero() || got.LastRunID != "run-1" {
		t.Fatalf("after firing: %+v", got)
	}
	c.Advance(24 * time.Hour)
	if n := runDue(t, s); n != 0 {
		t.Fatalf("one-shot fired again (%d)", n)
	}
}

// Downtime: occurrences missed while no process ran fire once, at start,
// and the next run is the next future occurrence: never a burst.
func TestSchedulerMissedRunsFireOnce(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	st := openStore(t, path)
	c := newClock(t0)
	ctx := context.Background()
	j, err := New(st, (&firings{}).fire, &Options{Now: c.Now}).Add(ctx, "agent:main:main", Spec{Name: "m", Schedule: "every:1m", Payload: turn("m")})
	if err != nil {
		t.Fatal(err)
	}
	// No scheduler runs for 10.5 minutes (ten occurrences: 1m … 10m).
	c.Advance(10*time.Minute + 30*time.Second)
	f := &firings{ch: make(chan Job, 10)}
	s := New(st, f.fire, &Options{Now: c.Now, Tick: time.Hour})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no catch-up fire at start")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := f.count(); n != 1 {
		t.Fatalf("catch-up fired %d times, want 1", n)
	}
	got, _ := s.Get(ctx, j.ID)
	if want := t0.Add(11 * time.Minute); !got.NextRun.Equal(want) {
		t.Fatalf("next %v, want %v (the next future occurrence)", got.NextRun, want)
	}
	if !strings.Contains(got.LastNote, "caught up: 9 later occurrence(s) were missed") {
		t.Fatalf("note %q", got.LastNote)
	}
	if n := runDue(t, s); n != 0 {
		t.Fatalf("a second pass fired %d", n)
	}
	c.Set(t0.Add(11 * time.Minute))
	if n := runDue(t, s); n != 1 {
		t.Fatalf("next occurrence fired %d", n)
	}
	got, _ = s.Get(ctx, j.ID)
	if got.LastNote != "" || got.RunCount != 2 {
		t.Fatalf("after an on-time run: %+v", got)
	}
}

// Two schedulers (two store handles: two processes) on one database with
// the same clock fire each occurrence exactly once.
func TestTwoSchedulersFireEachOccurrenceOnce(t *testing.T) {
	path := testdb.DSN(t, "sp.db")
	st1, st2 := openStore(t, path), openStore(t, path)
	c := newClock(t0)
	type occ struct {
		job string
		due time.Time
	}
	var mu sync.Mutex
	seen := map[occ]int{}
	perScheduler := [2]int{}
	fire := func(i int) FireFunc {
		return func(_ context.Context, j Job) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			seen[occ{j.ID, j.NextRun}]++
			perScheduler[i]++
			return "", nil
		}
	}
	s1 := New(st1, fire(0), &Options{Now: c.Now})
	s2 := New(st2, fire(1), &Options{Now: c.Now})
	ctx := context.Background()
	const jobs = 6
	for i := 0; i < jobs; i++ {
		sched := "every:1m"
		if i%2 == 1 {
			sched = "*/2 * * * *"
		}
		if _, err := s1.Add(ctx, "agent:main:main", Spec{Name: fmt.Sprint("j", i), Schedule: sched, Payload: turn("x")}); err != nil {
			t.Fatal(err)
		}
	}
	const minutes = 20
	for m := 1; m <= minutes; m++ {
		c.Set(t0.Add(time.Duration(m) * time.Minute))
		var wg sync.WaitGroup
		for _, s := range []*Scheduler{s1, s2, s1, s2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.RunDue(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	want := jobs/2*minutes + jobs/2*minutes/2 // every minute, and every other minute
	total := 0
	for o, n := range seen {
		if n != 1 {
			t.Errorf("occurrence %v fired %d times", o, n)
		}
		total += n
	}
	if total != want {
		t.Fatalf("fired %d occurrences, want %d (per scheduler %v)", total, want, perScheduler)
	}
	t.Logf("occurrences fired by scheduler 1: %d, by scheduler 2: %d", perScheduler[0], perScheduler[1])
}

// An occurrence that comes while the previous run is still active is
// skipped (noted), and run-now is refused; once the run ended it fires.
func TestSchedulerSkipsWhilePreviousRunActive(t *testing.T) {
	st := openStore(t, testdb.DSN(t, "sp.db"))
	c := newClock(t0)
	ctx := context.Background()
	f := &firings{onRun: func(j Job) string {
		r := &store.Run{ID: fmt.Sprintf("r-%d", time.Now().UnixNano()), Kind: "cron", ChildKey: j.SessionKey(), RequesterKey: j.CreatorKey, AgentID: "main", State: store.RunRunning}
		if err := st.InsertRun(ctx, r); err != nil {
			t.Error(err)
		}
		return r.ID
	}}
	s := newScheduler(t, st, c, f)
	j, err := s.Add(ctx, "agent:main:main", Spec{Name: "slow", Schedule: "every:1m", Payload: turn("slow")})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if n := runDue(t, s); n != 1 {
		t.Fatalf("fired %d", n)
	}
	first, _ := s.Get(ctx, j.ID)
	c.Advance(time.Minute)
	if n := runDue(t, s); n != 0 {
		t.Fatalf("fired %d while the previous run was active", n)
	}
	got, _ := s.Get(ctx, j.ID)
	if !strings.Contains(got.LastNote, "skipped: the previous run "+first.LastRunID+" was still active") || !got.NextRun.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("after the skip: %+v", got)
	}
	if _, err := s.RunNow(ctx, j.ID); !errors.Is(err, ErrBusy) {
		t.Fatalf("run now while active: %v", err)
	}
	if _, err := st.FinishRun(ctx, first.LastRunID, store.Outcome{State: store.RunOK}, nil); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if n := runDue(t, s); n != 1 {
		t.Fatalf("fired %d after the run ended", n)
	}
}

func TestRunNowKeepsSchedule(t *testing.T) {
	st := openStore(t, testdb.DSN(t, "sp.db"))
	c := newClock(t0)
	f := &firings{}
	s := newScheduler(t, st, c, f)
	ctx := context.Background()
	j, err := s.Add(ctx, "agent:main:main", Spec{Name: "h", Schedule: "@hourly", Payload: turn("h")})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(10 * time.Minute)
	id, err := s.RunNow(ctx, j.ID)
	if err != nil || id != "run-1" {
		t.Fatalf("run now: %q %v", id, err)
	}
	got, _ := s.Get(ctx, j.ID)
	if !got.NextRun.Equal(t0.Add(time.Hour)) || !got.LastRun.Equal(t0.Add(10*time.Minute)) || got.LastRunID != "run-1" {
		t.Fatalf("after run now: %+v", got)
	}
	if _, err := s.RunNow(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	// A fire that fails is recorded on the job.
	f.fail = errors.New("no model to run with")
	c.Set(t0.Add(time.Hour))
	if n := runDue(t, s); n != 0 {
		t.Fatalf("fired %d", n)
	}
	got, _ = s.Get(ctx, j.ID)
	if !strings.Contains(got.LastNote, "could not be started: no model to run with") || !got.NextRun.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after a failed fire: %+v", got)
	}
}

func TestStoredJobThatCannotBeReadIsDisabled(t *testing.T) {
	st := openStore(t, testdb.DSN(t, "sp.db"))
	c := newClock(t0)
	s := newScheduler(t, st, c, &firings{})
	ctx := context.Background()
	if err := st.InsertCronJob(ctx, &store.CronJob{ID: "bad", Name: "bad", Schedule: "0 0 30 2 *", Timezone: "UTC", Payload: `{"kind":"agentTurn","message":"x"}`,
		CreatorKey: "agent:main:main", Enabled: true, NextRunAt: t0.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if n := runDue(t, s); n != 0 {
		t.Fatalf("fired %d", n)
	}
	got, _ := s.Get(ctx, "bad")
	if got.Enabled || !strings.Contains(got.LastNote, "disabled: job.schedule") {
		t.Fatalf("bad job: %+v", got)
	}
}

func TestCloseBeforeStartAndTwice(t *testing.T) {
	st := openStore(t, testdb.DSN(t, "sp.db"))
	s := New(st, (&firings{}).fire, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = New(st, (&firings{}).fire, &Options{Tick: time.Millisecond})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("second Start accepted")
	}
	s.Close()
	s.Close()
}
