package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// runDBMigrate runs `sessionplane db migrate`: it copies the whole plane
// of one database into another, empty one (store.Copy), printing progress
// to stderr and a summary to stdout.
func runDBMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sessionplane db migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var from, to string
	var ignoreRunning bool
	fs.StringVar(&o.config, "config", "", "config file (for [store] path or url, the default --from)")
	fs.StringVar(&o.db, "db", "", "the default --from (overrides [store] path and url)")
	fs.StringVar(&from, "from", "", "the database to copy: sqlite:PATH, a file path, or postgres://... (default: --db or [store])")
	fs.StringVar(&to, "to", "", "the empty database to copy into: postgres://..., sqlite:PATH or a file path")
	fs.BoolVar(&ignoreRunning, "ignore-running", false, "copy even when a server is running on --from (the copy is then not a snapshot)")
	fs.Usage = func() { fmt.Fprint(stderr, dbUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sessionplane db migrate: unexpected argument %q\n%s", fs.Arg(0), dbUsage)
		return 2
	}
	if strings.TrimSpace(to) == "" {
		fmt.Fprint(stderr, "sessionplane db migrate: --to is required: the new, empty database, e.g. --to postgres://user@host:5432/sessionplane (createdb sessionplane first)\n")
		return 2
	}
	if from == "" {
		cfg, err := loadConfig(&o)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		from = cfg.Store.Path
	}
	src, dst := dbSpec(from), dbSpec(to)
	if src == dst {
		fmt.Fprintf(stderr, "sessionplane db migrate: --from and --to name the same database (%s)\n", redact(src))
		return 2
	}
	if !store.IsPostgresURL(src) && !strings.HasPrefix(src, "file:") {
		if _, err := os.Stat(src); err != nil {
			fmt.Fprintf(stderr, "sessionplane db migrate: --from %s: %v (name the existing SQLite database as --from sqlite:PATH)\n", src, err)
			return 2
		}
	}
	fromSt, err := store.Open(ctx, src, nil)
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane db migrate: open --from:", err)
		return 1
	}
	defer fromSt.Close()
	toSt, err := store.Open(ctx, dst, nil)
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane db migrate: open --to:", err)
		return 1
	}
	defer toSt.Close()
	fmt.Fprintf(stderr, "migrating %s (%s) → %s (%s), schema version %d\n", fromSt.Path(), fromSt.Backend(), toSt.Path(), toSt.Backend(), fromSt.SchemaVersion())
	var lastPrint time.Time
	res, err := store.Copy(ctx, fromSt, toSt, &store.CopyOptions{
		IgnoreRunning: ignoreRunning,
		Progress: func(table string, done, total int64) {
			if done == total || time.Since(lastPrint) >= time.Second {
				lastPrint = time.Now()
				fmt.Fprintf(stderr, "  %-13s %d/%d rows\n", table, done, total)
			}
		},
	})
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane db migrate:", err)
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "sessionplane db migrate: interrupted: %s may hold a partial copy: empty it before trying again\n", toSt.Path())
		}
		return 1
	}
	fmt.Fprintf(stdout, "ok: migrated %s (%s) to %s (%s), schema version %d\n", fromSt.Path(), fromSt.Backend(), toSt.Path(), toSt.Backend(), toSt.SchemaVersion())
	for _, t := range res.Tables {
		fmt.Fprintf(stdout, "  %-13s %d rows\n", t.Table, t.Target)
	}
	fmt.Fprint(stdout, "verified: row counts equal on both")
	for _, s := range res.Searches {
		fmt.Fprintf(stdout, "; search %q: %d hit(s) on both", s.Query, s.Hits)
	}
	fmt.Fprintln(stdout)
	skipped := store.NotCopied()
	names := make([]string, 0, len(skipped))
	for n := range skipped {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(stdout, "not copied: %s (%s)\n", n, skipped[n])
	}
	fmt.Fprintf(stdout, "next: start the servers with --db %s (or [store] url / path)\n", toSt.Path())
	return 0
}

// dbSpec turns a --from/--to value into what store.Open takes: a
// postgres:// URL as it is, sqlite:PATH (or sqlite://PATH) as PATH, a
// bare path as it is.
func dbSpec(v string) string {
	v = strings.TrimSpace(v)
	if p, ok := strings.CutPrefix(v, "sqlite:"); ok {
		if q, ok := strings.CutPrefix(p, "//"); ok {
			return q
		}
		return p
	}
	return v
}

// redact hides a PostgreSQL URL's password.
func redact(v string) string {
	if !store.IsPostgresURL(v) {
		return v
	}
	if i, j := strings.Index(v, "://"), strings.LastIndex(v, "@"); i >= 0 && j > i {
		userinfo := v[i+3 : j]
		if k := strings.IndexByte(userinfo, ':'); k >= 0 {
			return v[:i+3] + userinfo[:k] + ":xxxxx" + v[j:]
		}
	}
	return v
}
