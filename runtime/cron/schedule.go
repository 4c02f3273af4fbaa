package cron

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones even where the host has no zoneinfo

	"github.com/adhocore/gronx"
)

// Schedule kinds.
const (
	KindCron  = "cron"  // a 5-field cron expression, read in the job's time zone
	KindEvery = "every" // every:<Go duration>, e.g. every:15m
	KindAt    = "at"    // at:<RFC3339>, one shot
)

// DefaultMinEvery is the shortest every: interval a job may be added with:
// each occurrence is a model turn (tokens, money), and a shorter interval
// is almost always a mistake. Options.MinEvery changes it (tests).
const DefaultMinEvery = 10 * time.Second

// macros are the @-shorthands accepted for 5-field expressions.
var macros = map[string]bool{"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true, "@daily": true, "@hourly": true}

// fieldNames name gronx's segment numbers (segment 0 is the seconds it
// prepends to a 5-field expression).
var fieldNames = strings.NewReplacer("segment#1", "minute field", "segment#2", "hour field", "segment#3", "day-of-month field",
	"segment#4", "month field", "segment#5", "day-of-week field")

var segmentRe = regexp.MustCompile(`segment#\d`)

// Schedule is a parsed job schedule.
type Schedule struct {
	Kind  string
	Expr  string         // KindCron: the expression
	Loc   *time.Location // KindCron: the zone it is read in
	Every time.Duration  // KindEvery
	At    time.Time      // KindAt
}

// ParseSchedule parses a job's schedule and time zone. Errors name the
// field (job.schedule, job.timezone) and say what would be valid. An
// every: interval shorter than minEvery is refused (minEvery <= 0: no
// minimum, for jobs already stored).
func ParseSchedule(schedule, timezone string, minEvery time.Duration) (Schedule, error) {
	loc, err := LoadZone(timezone)
	if err != nil {
		return Schedule{}, err
	}
	schedule = strings.TrimSpace(schedule)
	switch {
	case schedule == "":
		return Schedule{}, errors.New(`job.schedule: empty: give a 5-field cron expression ("0 9 * * 1-5"), every:<duration> ("every:15m") or at:<RFC3339> ("at:2026-12-01T09:00:00Z")`)
	case strings.HasPrefix(schedule, "every:"):
		v := strings.TrimSpace(strings.TrimPrefix(schedule, "every:"))
		d, err := time.ParseDuration(v)
		if err != nil {
			return Schedule{}, fmt.Errorf("job.schedule: every:%s: %q is not a Go duration (e.g. every:30s, every:15m, every:2h30m)", v, v)
		}
		if d <= 0 {
			return Schedule{}, fmt.Errorf("job.schedule: every:%s: the interval must be positive", v)
		}
		if minEvery > 0 && d < minEvery {
			return Schedule{}, fmt.Errorf("job.schedule: every:%s is shorter than the minimum interval %s: use every:%s or more", v, minEvery, minEvery)
		}
		return Schedule{Kind: KindEvery, Every: d, Loc: loc}, nil
	case strings.HasPrefix(schedule, "at:"):
		v := strings.TrimSpace(strings.TrimPrefix(schedule, "at:"))
		at, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return Schedule{}, fmt.Errorf("job.schedule: at:%s is not an RFC3339 time with a zone (e.g. at:2026-12-01T09:00:00Z or at:2026-12-01T09:00:00+01:00)", v)
		}
		return Schedule{Kind: KindAt, At: at, Loc: loc}, nil
	}
	fields := strings.Fields(schedule)
	if !(len(fields) == 1 && macros[strings.ToLower(fields[0])]) && len(fields) != 5 {
		return Schedule{}, fmt.Errorf("job.schedule: %q has %d fields; a cron expression has 5 (minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1-5\"; seconds are not supported), or use every:<duration> or at:<RFC3339>",
			schedule, len(fields))
	}
	expr := strings.Join(fields, " ")
	if _, err := gronx.New().IsDue(expr, time.Now().In(loc)); err != nil {
		msg := segmentRe.ReplaceAllStringFunc(err.Error(), fieldNames.Replace)
		return Schedule{}, fmt.Errorf("job.schedule: %q is not a valid cron expression (minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1-5\"): %s", expr, msg)
	}
	return Schedule{Kind: KindCron, Expr: expr, Loc: loc}, nil
}

// LoadZone loads an IANA time zone ("" = UTC). "Local" is refused: a
// job's meaning must not depend on the host that happens to fire it.
func LoadZone(name string) (*time.Location, error) {
	name = strings.TrimSpace(name)
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if strings.EqualFold(name, "local") {
		return nil, errors.New(`job.timezone: "Local" depends on the server's host: use an IANA name such as Europe/Paris or America/New_York`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("job.timezone: unknown time zone %q: use an IANA name such as Europe/Paris, America/New_York or UTC", name)
	}
	return loc, nil
}

// Next returns the first occurrence strictly after now. prev is the
// occurrence being consumed (zero for a new job): every: keeps its phase
// from it (prev + k·interval), and a cron wall-clock time that a DST
// fall-back repeats is not fired a second time. ok is false when there is
// none: an at: job whose time has passed or fired. A cron expression that
// matches no date (e.g. "0 0 30 2 *") is an error.
func (s Schedule) Next(prev, now time.Time) (next time.Time, ok bool, err error) {
	switch s.Kind {
	case KindAt:
		if s.At.After(now) && (prev.IsZero() || s.At.After(prev)) {
			return s.At, true, nil
		}
		return time.Time{}, false, nil
	case KindEvery:
		if prev.IsZero() || prev.After(now) {
			return now.Add(s.Every), true, nil
		}
		k := now.Sub(prev)/s.Every + 1
		return prev.Add(k * s.Every), true, nil
	case KindCron:
		from := now
		for i := 0; i < 3; i++ {
			n, err := gronx.NextTickAfter(s.Expr, from.In(s.Loc), false)
			if err != nil || !n.After(from) {
				return time.Time{}, false, fmt.Errorf("job.schedule: %q never matches a date (or not within the next few years)", s.Expr)
			}
			if prev.IsZero() || wall(n, s.Loc) != wall(prev, s.Loc) {
				return n, true, nil
			}
			from = n // the same wall-clock time again (DST fall-back): skip it
		}
		return time.Time{}, false, fmt.Errorf("job.schedule: %q: no next occurrence found", s.Expr)
	}
	return time.Time{}, false, fmt.Errorf("job.schedule: unknown schedule kind %q", s.Kind)
}

func wall(t time.Time, loc *time.Location) string { return t.In(loc).Format("2006-01-02 15:04") }

// Between counts the occurrences after from and at or before to, up to
// limit (for reporting missed runs).
func (s Schedule) Between(from, to time.Time, limit int) int {
	n := 0
	for n < limit {
		next, ok, err := s.Next(from, from)
		if err != nil || !ok || next.After(to) {
			break
		}
		n++
		from = next
	}
	return n
}

// String renders the schedule as written (with its zone for cron).
func (s Schedule) String() string {
	switch s.Kind {
	case KindEvery:
		return "every:" + s.Every.String()
	case KindAt:
		return "at:" + s.At.Format(time.RFC3339)
	default:
		if s.Loc != nil && s.Loc != time.UTC {
			return s.Expr + " (" + s.Loc.String() + ")"
		}
		return s.Expr
	}
}

// formatDuration is a short, stable rendering for notes.
func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h" + strconv.Itoa(int(d.Minutes())%60) + "m"
	case d >= time.Minute:
		return strconv.Itoa(int(d.Minutes())) + "m" + strconv.Itoa(int(d.Seconds())%60) + "s"
	default:
		return d.Round(time.Millisecond).String()
	}
}
