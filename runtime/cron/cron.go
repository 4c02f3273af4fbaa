// Package cron owns scheduled agent turns: parsing and validating job
// schedules, the jobs kept in the store (cron_jobs), and the Scheduler that
// fires each due occurrence exactly once, even with several server
// processes on one database.
//
// Schedules are a 5-field cron expression read in the job's IANA time zone
// (default UTC), every:<Go duration> (at least DefaultMinEvery, phase kept
// from the first run), or at:<RFC3339> (one shot: the job is disabled once
// it fired). A wall-clock time that a DST change skips does not fire that
// day; one that it repeats fires once.
//
// Cron expressions are parsed and stepped by github.com/adhocore/gronx: it
// is maintained (releases through 2026), has no dependencies, and computes
// the next occurrence in the zone of the time it is given. robfig/cron/v3,
// the usual choice, has had no release since 2021, and its maintained fork
// (netresearch/go-cron) was still pre-1.0.
//
// Exactly once: every pass reads the due jobs (enabled, next_run_at <= now)
// and claims each occurrence with one compare-and-set UPDATE (next_run_at
// moves on only where it still holds the due value); only the process whose
// UPDATE changed the row fires. A process that dies between its claim and
// its submit loses that occurrence: at most once, never twice, because a
// repeated agent turn can repeat side effects.
//
// Missed runs: when occurrences were missed while no process ran (or the
// job was overdue for any reason), the job fires once, as soon as a
// scheduler sees it, and its next run is the first occurrence after now:
// never a burst of catch-up runs. The number missed is noted on the job.
//
// No overlap: an occurrence that comes while the job's previous run is
// still queued or running is skipped (and noted on the job), so a slow
// turn never piles up behind itself.
package cron

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// PayloadAgentTurn is the one payload kind: run an agent turn.
const PayloadAgentTurn = "agentTurn"

// Payload is what a job does when it fires: one agent turn in session
// cron:<jobId>, announced to the job's creator.
type Payload struct {
	Kind        string         `json:"kind"`
	Message     string         `json:"message"`
	AgentID     string         `json:"agentId,omitempty"` // "" = the creator's agent
	Model       string         `json:"model,omitempty"`
	TimeoutSecs int            `json:"timeout_secs,omitempty"`
	ActiveTools []string       `json:"active_tools,omitempty"`
	ToolChoice  *policy.Choice `json:"tool_choice,omitempty"`
	// Authority is the creator's policy layers at add (its presets by name,
	// re-resolved at each firing; a call's inline rules as they were). Every
	// firing is bounded by it. Set by the server, never by the caller.
	Authority []policy.Layer `json:"authority,omitempty"`
	// CreatorAgent is the agent the creator acted as, CreatorVia the agents
	// of whoever caused the creator's own work (policy.Caller.Via).
	CreatorAgent string   `json:"creator_agent,omitempty"`
	CreatorVia   []string `json:"creator_via,omitempty"`
	// Bound is true for jobs whose Authority was recorded at add (an empty
	// Authority then means an unrestricted creator). Jobs added by earlier
	// versions have it false and are refused when they fire (fail closed).
	Bound bool `json:"bound,omitempty"`
}

// Validate checks a payload on its own (the caller checks what depends on
// the configuration: agents, models). Errors name the job.payload field.
func (p Payload) Validate() error {
	if p.Kind != PayloadAgentTurn {
		return fmt.Errorf("job.payload.kind: %q is not supported: the only kind is %q", p.Kind, PayloadAgentTurn)
	}
	if strings.TrimSpace(p.Message) == "" {
		return errors.New("job.payload.message: empty: say what the agent should do on each run")
	}
	if p.TimeoutSecs < 0 {
		return fmt.Errorf("job.payload.timeout_secs: %d is negative (0 = the configured default)", p.TimeoutSecs)
	}
	if p.ToolChoice != nil || len(p.ActiveTools) > 0 {
		var active []string
		if len(p.ActiveTools) > 0 {
			active = p.ActiveTools
		}
		if _, err := policy.ResolveControls(policy.Controls{Active: active, Choice: p.ToolChoice}); err != nil {
			return fmt.Errorf("job.payload.tool_choice: %v", err)
		}
	}
	return nil
}

// Spec is a job as a caller adds it.
type Spec struct {
	Name     string
	Schedule string
	Timezone string // IANA name for cron expressions; "" = UTC
	Payload  Payload
}

// Job is a stored job.
type Job struct {
	ID         string
	Name       string
	Schedule   string
	Timezone   string
	Payload    Payload
	CreatorKey string
	Enabled    bool
	NextRun    time.Time // zero = none (a fired one-shot)
	LastRun    time.Time // zero = never
	LastRunID  string
	LastNote   string
	RunCount   int
	CreatedAt  time.Time
	// Due is the occurrence being fired (its scheduled time); zero for a
	// run started out of schedule (RunNow). Set on the Job given to a
	// FireFunc only.
	Due time.Time
}

// SessionKey is the session the job's turns run in.
func (j Job) SessionKey() string { return SessionKey(j.ID) }

// SessionKey is the session of job id's turns: cron:<id>.
func SessionKey(id string) string { return "cron:" + id }

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func fromRow(r *store.CronJob) (*Job, error) {
	j := &Job{ID: r.ID, Name: r.Name, Schedule: r.Schedule, Timezone: r.Timezone, CreatorKey: r.CreatorKey, Enabled: r.Enabled,
		NextRun: msTime(r.NextRunAt), LastRun: msTime(r.LastRunAt), LastRunID: r.LastRunID, LastNote: r.LastNote, RunCount: r.RunCount,
		CreatedAt: msTime(r.CreatedAt)}
	if err := json.Unmarshal([]byte(r.Payload), &j.Payload); err != nil {
		return j, fmt.Errorf("cron job %s: stored payload is unreadable: %v", r.ID, err)
	}
	return j, nil
}

// FireFunc starts a job's turn and returns the run id. It must not block
// on the turn itself.
type FireFunc func(ctx context.Context, job Job) (runID string, err error)

// Options tune a Scheduler; nil takes the defaults.
type Options struct {
	Now      func() time.Time // default time.Now
	Logger   *slog.Logger     // default: discard
	Tick     time.Duration    // how often the store is polled for due jobs; default 1s
	MinEvery time.Duration    // shortest every: interval Add accepts; default DefaultMinEvery
}

// Scheduler fires due jobs. Start it once; Close stops it. Its methods are
// safe for concurrent use, and several Schedulers (in several processes)
// may share one store.
type Scheduler struct {
	st       *store.Store
	fire     FireFunc
	now      func() time.Time
	log      *slog.Logger
	tick     time.Duration
	minEvery time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a scheduler over st that fires jobs with fire.
func New(st *store.Store, fire FireFunc, opts *Options) *Scheduler {
	if opts == nil {
		opts = &Options{}
	}
	s := &Scheduler{st: st, fire: fire, now: opts.Now, log: opts.Logger, tick: opts.Tick, minEvery: opts.MinEvery}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.tick <= 0 {
		s.tick = time.Second
	}
	if s.minEvery <= 0 {
		s.minEvery = DefaultMinEvery
	}
	return s
}

// MinEvery is the shortest every: interval Add accepts.
func (s *Scheduler) MinEvery() time.Duration { return s.minEvery }

// Start begins the polling loop: one pass at once (catching up on runs
// missed while no process ran), then one every Tick, until ctx ends or
// Close is called.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return errors.New("cron: scheduler already started")
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.loop(ctx)
	return nil
}

// Close stops the loop and waits for it. Runs already fired go on (they
// belong to the run manager). Close may be called more than once, and
// before Start.
func (s *Scheduler) Close() error {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
	return nil
}

func (s *Scheduler) loop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		if _, err := s.RunDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("cron pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dueBatch bounds one pass; the rest wait for the next.
const dueBatch = 100

// RunDue is one scheduling pass at the scheduler's now: it claims and
// fires every due occurrence it wins and returns how many runs it started.
// Start calls it every Tick; tests call it with a fake clock.
func (s *Scheduler) RunDue(ctx context.Context) (int, error) {
	now := s.now()
	rows, err := s.st.DueCronJobs(ctx, now.UnixMilli(), dueBatch)
	if err != nil {
		return 0, err
	}
	fired := 0
	var errs []error
	for _, row := range rows {
		if ctx.Err() != nil {
			break
		}
		ok, err := s.fireDue(ctx, row, now)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			fired++
		}
	}
	return fired, errors.Join(errs...)
}

// fireDue claims row's due occurrence and, when this scheduler won it,
// fires the job.
func (s *Scheduler) fireDue(ctx context.Context, row *store.CronJob, now time.Time) (bool, error) {
	due := time.UnixMilli(row.NextRunAt)
	job, perr := fromRow(row)
	var sched Schedule
	if perr == nil {
		sched, perr = ParseSchedule(row.Schedule, row.Timezone, 0)
	}
	var next time.Time
	if perr == nil {
		var ok bool
		if next, ok, perr = sched.Next(due, now); perr == nil && !ok {
			next = time.Time{}
		}
	}
	var nextMS int64
	if !next.IsZero() {
		nextMS = next.UnixMilli()
	}
	claimed, active, err := s.st.ClaimCronOccurrence(ctx, row.ID, row.NextRunAt, nextMS, now.UnixMilli())
	if err != nil || !claimed {
		return false, err // another process fired this occurrence
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if perr != nil {
		// A job that cannot be read or stepped is disabled (nextMS is 0).
		s.log.Error("cron job disabled", "job", row.ID, "err", perr)
		return false, s.st.RecordCronRun(wctx, row.ID, "", "disabled: "+perr.Error())
	}
	if active != "" {
		note := fmt.Sprintf("the occurrence due %s was skipped: the previous run %s was still active", due.UTC().Format(time.RFC3339), active)
		s.log.Info("cron occurrence skipped", "job", row.ID, "run", active)
		return false, s.st.RecordCronRun(wctx, row.ID, "", note)
	}
	note := ""
	if missed := sched.Between(due, now, 1000); missed > 0 {
		more := ""
		if missed == 1000 {
			more = "+"
		}
		note = fmt.Sprintf("caught up: %d%s later occurrence(s) were missed while no server ran (due %s, fired %s late); fired once", missed, more,
			due.UTC().Format(time.RFC3339), formatDuration(now.Sub(due)))
		s.log.Info("cron catch-up", "job", row.ID, "missed", missed)
	}
	job.Due = due
	runID, err := s.fire(ctx, *job)
	if err != nil {
		s.log.Warn("cron fire", "job", row.ID, "err", err)
		return false, s.st.RecordCronRun(wctx, row.ID, "", "the run could not be started: "+err.Error())
	}
	s.log.Info("cron job fired", "job", row.ID, "run", runID)
	return true, s.st.RecordCronRun(wctx, row.ID, runID, note)
}

// newID is a short random job id (12 hex digits).
func newID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Validate checks a spec without storing it and returns its parsed
// schedule and first run. Errors name the job field.
func (s *Scheduler) Validate(spec Spec) (Schedule, time.Time, error) {
	if strings.TrimSpace(spec.Name) == "" {
		return Schedule{}, time.Time{}, errors.New("job.name: empty: give the job a short name")
	}
	sched, err := ParseSchedule(spec.Schedule, spec.Timezone, s.minEvery)
	if err != nil {
		return Schedule{}, time.Time{}, err
	}
	if err := spec.Payload.Validate(); err != nil {
		return Schedule{}, time.Time{}, err
	}
	next, ok, err := sched.Next(time.Time{}, s.now())
	if err != nil {
		return Schedule{}, time.Time{}, err
	}
	if !ok {
		return Schedule{}, time.Time{}, fmt.Errorf("job.schedule: %s is not in the future (now %s)", strings.TrimSpace(spec.Schedule), s.now().UTC().Format(time.RFC3339))
	}
	return sched, next, nil
}

// Add validates spec and stores it as a job of creator, enabled, with its
// first run computed.
func (s *Scheduler) Add(ctx context.Context, creator string, spec Spec) (*Job, error) {
	_, next, err := s.Validate(spec)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(spec.Payload)
	if err != nil {
		return nil, err
	}
	tz := strings.TrimSpace(spec.Timezone)
	if tz == "" {
		tz = "UTC"
	}
	row := &store.CronJob{Name: strings.TrimSpace(spec.Name), Schedule: strings.TrimSpace(spec.Schedule), Timezone: tz,
		Payload: string(payload), CreatorKey: creator, Enabled: true, NextRunAt: next.UnixMilli()}
	for attempt := 0; ; attempt++ {
		if row.ID, err = newID(); err != nil {
			return nil, err
		}
		err = s.st.InsertCronJob(ctx, row)
		if err == nil || attempt == 2 || !strings.Contains(err.Error(), "UNIQUE") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return fromRow(row)
}

// Get returns a job, or an error wrapping store.ErrNotFound.
func (s *Scheduler) Get(ctx context.Context, id string) (*Job, error) {
	row, err := s.st.GetCronJob(ctx, id)
	if err != nil {
		return nil, err
	}
	return fromRow(row)
}

// List returns creator's jobs ("" = every job), oldest first. A job whose
// payload cannot be read is listed with an empty payload.
func (s *Scheduler) List(ctx context.Context, creator string) ([]*Job, error) {
	rows, err := s.st.ListCronJobs(ctx, creator)
	if err != nil {
		return nil, err
	}
	out := make([]*Job, 0, len(rows))
	for _, r := range rows {
		j, _ := fromRow(r)
		out = append(out, j)
	}
	return out, nil
}

// Remove deletes a job; its session and runs stay. It returns false when
// there was no such job.
func (s *Scheduler) Remove(ctx context.Context, id string) (bool, error) {
	return s.st.DeleteCronJob(ctx, id)
}

// ErrBusy is wrapped by RunNow's error when the job's previous run is
// still active.
var ErrBusy = errors.New("the job's previous run is still active")

// RunNow fires job id at once, out of schedule (its next scheduled run is
// unchanged), unless its previous run is still active.
func (s *Scheduler) RunNow(ctx context.Context, id string) (string, error) {
	job, err := s.Get(ctx, id)
	if err != nil {
		return "", err
	}
	active, err := s.st.StartCronRun(ctx, id, s.now().UnixMilli())
	if err != nil {
		return "", err
	}
	if active != "" {
		return "", fmt.Errorf("cron job %s: %w (run %s): wait for it to end (cron status shows its state)", id, ErrBusy, active)
	}
	runID, err := s.fire(ctx, *job)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err != nil {
		_ = s.st.RecordCronRun(wctx, id, "", "run now: the run could not be started: "+err.Error())
		return "", err
	}
	return runID, s.st.RecordCronRun(wctx, id, runID, "")
}
