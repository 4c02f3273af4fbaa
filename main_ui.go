package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/sessionplane/sessionplane/mcp/httpauth"
	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
	"github.com/sessionplane/sessionplane/ui"
)

const uiUsage = `sessionplane ui — a read-only, live web dashboard of the session plane.

Usage:
  sessionplane ui [--db FILE] [--config FILE] [--addr 127.0.0.1:8766] [--agent ID] [--preset NAME]

It serves on a loopback address and shows what the principal named by
--agent and --preset may read (the same policy as the MCP tools). The token
is $SESSIONPLANE_UI_TOKEN, else $SESSIONPLANE_HTTP_TOKEN, else a new one; a
new one is printed on stderr inside the address to open.

Flags:
`

// runUI serves the dashboard until ctx ends.
func runUI(ctx context.Context, args []string, stderr io.Writer) int {
	var o options
	var addr string
	fs := flag.NewFlagSet("sessionplane ui", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "config file (default: $SESSIONPLANE_CONFIG, else $XDG_CONFIG_HOME/sessionplane/config.toml if present, else built-in defaults)")
	fs.StringVar(&o.db, "db", "", "SQLite database path (overrides [store] path)")
	fs.StringVar(&addr, "addr", "127.0.0.1:8766", "loopback address to serve on (port 0 picks a free one)")
	fs.StringVar(&o.agent, "agent", "", "agent id the viewer acts as: it sees what agent:<id>:main may read (default main, or [mcp] agent)")
	fs.StringVar(&o.preset, "preset", "", "preset that bounds what the viewer may read (overrides [mcp] preset)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprint(stderr, uiUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sessionplane ui: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	log, ok := newLogger("sessionplane ui", o.logLevel, stderr)
	if !ok {
		return 2
	}
	if err := loopbackOnly(addr); err != nil {
		fmt.Fprintln(stderr, "sessionplane ui:", err)
		return 2
	}
	cfg, err := loadConfig(&o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	st, err := store.Open(ctx, cfg.Store.Path, &store.Options{Logger: log, Limits: storeLimits(cfg.Limits)})
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane ui:", err)
		return 1
	}
	defer st.Close()
	gate, err := policy.New(cfg, st, tools.Catalog)
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane ui:", err)
		return 2
	}
	// The viewer is the principal the flags describe, with the same own
	// session as the MCP server gives it (--session included).
	caller, err := httpauth.Default(cfg).Caller(gate)
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane ui: viewer preset:", err)
		return 2
	}
	token, generated := os.Getenv("SESSIONPLANE_UI_TOKEN"), false
	if token == "" {
		token = os.Getenv("SESSIONPLANE_HTTP_TOKEN")
	}
	if token == "" {
		token, generated = ui.NewToken(), true
	}
	var auth ui.Authenticator
	if len(cfg.MCP.HTTP.Tokens) > 0 {
		// The same principals as --http: each token sees what its principal may read.
		a, _, err := httpauth.FromConfig(cfg, &httpauth.Options{Getenv: os.Getenv})
		if err != nil {
			fmt.Fprintln(stderr, "sessionplane ui:", err)
			return 2
		}
		auth, generated = a.Callers(gate), false
		token = ""
	} else {
		ta, err := ui.NewTokenAuth(token, caller)
		if err != nil {
			fmt.Fprintln(stderr, "sessionplane ui:", err)
			return 2
		}
		auth = ta
	}
	dash, err := ui.New(ui.Options{Store: st, Config: cfg, Policy: gate, Auth: auth, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "sessionplane ui:", err)
		return 1
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		dash.Close()
		fmt.Fprintf(stderr, "sessionplane ui: listen on %s: %v (pick another --addr, or port 0 for a free one)\n", addr, err)
		return 1
	}
	srv := &http.Server{Handler: dash, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	url := "http://" + ln.Addr().String() + "/"
	log.Info("sessionplane ui serving", "version", buildVersion(), "db", st.Path(), "viewer", caller.Key, "preset", cfg.MCP.Preset, "url", url)
	switch {
	case generated:
		fmt.Fprintf(stderr, "sessionplane ui: open %s?token=%s\n", url, token)
	case len(cfg.MCP.HTTP.Tokens) > 0:
		fmt.Fprintf(stderr, "sessionplane ui: open %s?token=<one of the [[mcp.http.tokens]]: each sees what its principal may read>\n", url)
	default:
		fmt.Fprintf(stderr, "sessionplane ui: open %s?token=<the token in $SESSIONPLANE_UI_TOKEN or $SESSIONPLANE_HTTP_TOKEN>\n", url)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	dash.Close() // ends the event streams, so Shutdown does not wait on them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err == nil {
		err = <-served
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("ui server stopped", "err", err)
		return 1
	}
	log.Info("sessionplane ui stopped")
	return 0
}

// loopbackOnly refuses addresses that are not on loopback: the standalone
// dashboard has one token and no TLS.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %v (use host:port, e.g. 127.0.0.1:8766)", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--addr %q: the dashboard serves on loopback only (127.0.0.1 or [::1]); reach it from elsewhere through an SSH tunnel", addr)
	}
	return nil
}
