// Command sessionplane is an MCP server that gives any MCP client a session
// plane: durable agent sessions, sub-agents, agent-to-agent messaging and a
// preset-driven policy layer, in one SQLite file. stdout carries JSON-RPC
// only; every log line goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	spmcp "github.com/sessionplane/sessionplane/mcp"
	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
	"github.com/sessionplane/sessionplane/ui"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usage = `sessionplane — an MCP server for durable agent sessions, sub-agents and policy presets.

Usage:
  sessionplane [flags]                      serve MCP over stdio (what MCP clients run)
  sessionplane --http 127.0.0.1:8765        serve the same server as Streamable HTTP at /mcp
  sessionplane config check [--config FILE] validate a config file and print the resolved config
  sessionplane ui [--addr 127.0.0.1:8766]   a read-only live web dashboard (see sessionplane ui --help)
  sessionplane demo [--db PATH]             run the coordinator flow offline and print what a client sees
  sessionplane db check [--db PATH]         check the database's integrity (exit 0 healthy, 1 corrupt)
  sessionplane db backup --to FILE          write an online, consistent copy of the database
  sessionplane db migrate --from sqlite:PATH --to postgres://...  move a whole plane to another, empty database
  sessionplane policy explain [--tool T] [--key K] [--spawn JSON]  what the client may do, and why

Flags:
`

type options struct {
	config, db, agent, preset, session, http, logLevel string
	version, httpNoAuth                                bool
}

func parseFlags(name string, args []string, stderr io.Writer) (*options, *flag.FlagSet, error) {
	var o options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "config file (default: $SESSIONPLANE_CONFIG, else $XDG_CONFIG_HOME/sessionplane/config.toml if present, else built-in defaults)")
	fs.StringVar(&o.db, "db", "", "SQLite database path (overrides [store] path; default $XDG_DATA_HOME/sessionplane/sessionplane.db)")
	fs.StringVar(&o.agent, "agent", "", "agent id the MCP client acts as (default main, or [mcp] agent)")
	fs.StringVar(&o.preset, "preset", "", "preset applied to the MCP client's calls (overrides [mcp] preset); its own session becomes agent:<agent>:<preset>")
	fs.StringVar(&o.session, "session", "", "the MCP client's own session key (overrides [mcp] session; default agent:<agent>:main, or agent:<agent>:<preset> under a preset)")
	fs.StringVar(&o.http, "http", "", "serve Streamable HTTP on this address (e.g. 127.0.0.1:8765) instead of stdio; every request needs Authorization: Bearer <token>")
	fs.BoolVar(&o.httpNoAuth, "http-no-auth", false, "with --http on loopback only: serve WITHOUT authentication (any local user or process acts as the client)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	return &o, fs, err
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) >= 1 && args[0] == "config" {
		return runConfig(args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "ui" {
		return runUI(ctx, args[1:], stderr)
	}
	if len(args) >= 1 && args[0] == "demo" {
		return runDemo(ctx, args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "db" {
		return runDB(ctx, args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "policy" {
		return runPolicy(ctx, args[1:], stdout, stderr)
	}
	o, fs, err := parseFlags("sessionplane", args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sessionplane: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if o.version {
		fmt.Fprintln(stdout, "sessionplane", buildVersion())
		return 0
	}
	if o.http != "" {
		if err := spmcp.CheckHTTPAddr(o.http); err != nil {
			fmt.Fprintln(stderr, "sessionplane:", err)
			return 2
		}
	}
	log, ok := newLogger("sessionplane", o.logLevel, stderr)
	if !ok {
		return 2
	}

	cfg, err := loadConfig(o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	st, err := store.Open(ctx, cfg.Store.Path, &store.Options{Logger: log, Limits: storeLimits(cfg.Limits)})
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane:", err)
		return 1
	}
	defer st.Close()
	srv, err := spmcp.Build(cfg, st, &spmcp.BuildOptions{Logger: log, Version: buildVersion()})
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane:", err)
		return 2
	}
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "sessionplane:", err)
		return 1
	}
	defer srv.Close()
	log.Info("sessionplane starting", "version", buildVersion(), "db", st.Path(), "backend", st.Backend(), "schema", st.SchemaVersion(),
		"agent", cfg.MCP.Agent, "session", srv.Caller().Key, "config", cfg.Source())
	if o.http != "" {
		err = serveHTTP(ctx, srv, cfg, o, log, stderr)
	} else {
		err = srv.ServeStdio(ctx, stdin, stdout, cfg.MCP.WorkerPool)
	}
	if err != nil {
		log.Error("server stopped", "err", err)
		return 1
	}
	log.Info("sessionplane stopped")
	return 0
}

// serveHTTP authenticates --http: [[mcp.http.tokens]], else
// $SESSIONPLANE_HTTP_TOKEN, else a token generated now and printed once,
// with a client snippet, to stderr; --http-no-auth only on loopback.
func serveHTTP(ctx context.Context, srv *spmcp.Server, cfg *config.Config, o *options, log *slog.Logger, stderr io.Writer) error {
	auth, generated, err := httpauth.FromConfig(cfg, &httpauth.Options{Getenv: os.Getenv, NoAuth: o.httpNoAuth})
	if err != nil {
		return err
	}
	opts := spmcp.HTTPOptions{Auth: auth, AllowedOrigins: cfg.MCP.HTTP.AllowedOrigins,
		IdleTimeout: time.Duration(cfg.MCP.HTTP.SessionIdleMinutes) * time.Minute, MaxSessions: cfg.MCP.HTTP.MaxSessions}
	// The dashboard under /ui/, behind the same tokens: each sees what its
	// principal may read. Not with --http-no-auth (it has no principal to
	// sign in as); use `sessionplane ui` there.
	if auth.Source() != httpauth.SourceNone {
		env := srv.Env()
		dash, err := ui.New(ui.Options{Store: env.Store, Config: cfg, Policy: env.Policy, Auth: auth.Callers(env.Policy), Prefix: "/ui/", Logger: log})
		if err != nil {
			return err
		}
		defer dash.Close()
		opts.Mount = map[string]http.Handler{"/ui/": dash}
		opts.OnShutdown = func() { dash.Close() }
	}
	return srv.ServeHTTP(ctx, o.http, opts, func(a net.Addr) {
		url := "http://" + a.String() + "/mcp"
		if opts.Mount != nil {
			log.Info("serving Streamable HTTP", "url", url, "auth", string(auth.Source()), "principals", len(auth.Principals()),
				"dashboard", "http://"+a.String()+"/ui/?token=<your token>")
		} else {
			log.Info("serving Streamable HTTP", "url", url, "auth", string(auth.Source()), "principals", len(auth.Principals()))
		}
		switch auth.Source() {
		case httpauth.SourceNone:
			log.Warn("AUTHENTICATION IS OFF (--http-no-auth): any local user or process that can reach " + url + " acts as " + srv.Caller().Key + " with its full rights; use it only on a single-user machine")
		case httpauth.SourceGenerated:
			fmt.Fprintf(stderr, `
sessionplane: no [[mcp.http.tokens]] and no $%s: this token was generated for this run only
(set $%s to keep one across restarts):

  %s

Client configuration (JSON, e.g. VS Code .vscode/mcp.json "servers" or Cursor mcp.json "mcpServers"):

  "sessionplane": {"type": "http", "url": "%s", "headers": {"Authorization": "Bearer %s"}}

Claude Code:

  claude mcp add --transport http sessionplane %s --header "Authorization: Bearer %s"

`, httpauth.EnvToken, httpauth.EnvToken, generated, url, generated, url, generated)
		}
	})
}

// loadConfig resolves and loads the configuration and applies flag overrides.
func loadConfig(o *options) (*config.Config, error) {
	cfg, err := config.Load(config.Resolve(o.config))
	if err != nil {
		return nil, err
	}
	if o.db != "" {
		cfg.Store.Path = o.db
	}
	if v := os.Getenv(config.EnvHostID); v != "" {
		cfg.Cluster.HostID = v
	}
	if o.agent != "" {
		cfg.MCP.Agent = o.agent
	}
	if o.preset != "" {
		if _, ok := cfg.Agents.Presets[o.preset]; !ok {
			return nil, fmt.Errorf("--preset %q: no such preset (defined: %s)", o.preset, presetNames(cfg))
		}
		cfg.MCP.Preset = o.preset
	}
	if o.session != "" {
		cfg.MCP.Session = o.session
	}
	if msg := config.CheckOwnSession(cfg.MCP.Agent, cfg.MCP.Preset, cfg.MCP.Session); msg != "" {
		return nil, fmt.Errorf("--session / [mcp] session: %s", msg)
	}
	if o.httpNoAuth && o.http == "" {
		return nil, errors.New("--http-no-auth needs --http")
	}
	return cfg, nil
}

func presetNames(cfg *config.Config) string {
	var names []string
	for n := range cfg.Agents.Presets {
		names = append(names, n)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: sessionplane config check [--config FILE]")
		return 2
	}
	o, fs, err := parseFlags("sessionplane config check", args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: sessionplane config check [--config FILE]")
		return 2
	}
	cfg, err := loadConfig(o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if _, err := policy.New(cfg, nil, tools.Catalog); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := checkProviders(cfg, stderr); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	src := cfg.Source()
	if src == "" {
		src = "(built-in defaults)"
	}
	fmt.Fprintf(stderr, "config OK: %s\n", src)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	shown := *cfg
	shown.Store = cfg.Store.Redacted() // the resolved config is printed: never a database password
	if err := enc.Encode(&shown); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// storeLimits maps [limits] onto the store's own limits.
func storeLimits(l config.Limits) store.Limits {
	l = l.Effective()
	return store.Limits{MaxMessageBytes: l.MessageBytes, SearchScoreBytes: l.SearchScoreBytes,
		SearchQueryBytes: l.SearchQueryBytes, SearchQueryTerms: l.SearchQueryTerms}
}

// newLogger is the stderr logger of a command at the --log-level given; a
// level it does not know is reported (naming the command) and ok is false.
func newLogger(cmd, level string, stderr io.Writer) (log *slog.Logger, ok bool) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		fmt.Fprintf(stderr, "%s: --log-level %q: use debug, info, warn or error\n", cmd, level)
		return nil, false
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l})), true
}
