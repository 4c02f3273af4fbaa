package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sessionplane/sessionplane/runtime/store"
)

const dbUsage = `usage:
  sessionplane db check [--db PATH] [--config FILE]         integrity check (exit 0 healthy, 1 damaged)
  sessionplane db backup --to FILE [--db PATH] [--config FILE]  online, consistent copy (servers may keep running)
  sessionplane db migrate --from sqlite:PATH --to postgres://...  copy a whole plane into another, empty database
      [--ignore-running] [--config FILE]                         (--from default: --db or [store]; --to may be sqlite:PATH too)
`

// runDB runs the "db" subcommands: check, backup (neither creates,
// migrates or writes the database it reads) and migrate (dbmigrate.go).
func runDB(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "migrate" {
		return runDBMigrate(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "check" && args[0] != "backup") {
		fmt.Fprint(stderr, dbUsage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("sessionplane db "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var to string
	fs.StringVar(&o.config, "config", "", "config file (for [store] path)")
	fs.StringVar(&o.db, "db", "", "SQLite database (overrides [store] path)")
	if cmd == "backup" {
		fs.StringVar(&to, "to", "", "the new file to write the copy to (must not exist)")
	}
	fs.Usage = func() { fmt.Fprint(stderr, dbUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sessionplane db %s: unexpected argument %q\n%s", cmd, fs.Arg(0), dbUsage)
		return 2
	}
	if cmd == "backup" && strings.TrimSpace(to) == "" {
		fmt.Fprintf(stderr, "sessionplane db backup: --to FILE is required (a new file for the copy)\n")
		return 2
	}
	cfg, err := loadConfig(&o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	path := cfg.Store.Path
	switch cmd {
	case "check":
		res, err := store.Check(ctx, path)
		if err != nil {
			fmt.Fprintln(stderr, "sessionplane db check:", err)
			return 1
		}
		if !res.OK {
			fmt.Fprintf(stderr, "sessionplane db check: %s is corrupt (%d problem(s) found):\n", path, len(res.Problems))
			for _, p := range res.Problems {
				fmt.Fprintln(stderr, "  "+p)
			}
			fmt.Fprintf(stderr, "What to do: stop the servers using it; restore your latest backup (made with `sessionplane db backup --to FILE`),\n"+
				"or recover what is readable with the sqlite3 shell: sqlite3 %q .recover | sqlite3 recovered.db, then point --db at recovered.db.\n", path)
			return 1
		}
		fmt.Fprintf(stdout, "ok: %s passed SQLite's integrity check\n", path)
		return 0
	default:
		res, err := store.Backup(ctx, path, to)
		if err != nil {
			fmt.Fprintln(stderr, "sessionplane db backup:", err)
			return 1
		}
		if !res.OK {
			fmt.Fprintf(stderr, "sessionplane db backup: the copy %s failed its integrity check: %s\n", to, strings.Join(res.Problems, "; "))
			return 1
		}
		fmt.Fprintf(stdout, "ok: backed up %s to %s (integrity check passed)\n", path, to)
		return 0
	}
}
