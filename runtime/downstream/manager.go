package downstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// Defaults for the zero fields of Options.
const (
	DefaultStartTimeout   = 30 * time.Second
	DefaultCallTimeout    = 60 * time.Second
	DefaultListTimeout    = 15 * time.Second
	DefaultMaxOutputBytes = 64 << 10
)

// Separator joins a server name and a tool name into a qualified tool name.
const Separator = "__"

var (
	// ErrClosed is returned by Tools and Call after Close.
	ErrClosed = errors.New("downstream: manager closed")
	// ErrUnknownTool is wrapped by Call's error when the qualified name names no configured
	// server, or a tool the server does not list.
	ErrUnknownTool = errors.New("unknown downstream tool")
)

// Options tunes a Manager. A nil *Options, and any zero field, means the default.
type Options struct {
	// Logger receives lifecycle events and the children's stderr. Default: discard.
	Logger *slog.Logger
	// StartTimeout bounds spawning a server and the MCP handshake. Default 30s.
	StartTimeout time.Duration
	// CallTimeout bounds one tools/call. Default 60s.
	CallTimeout time.Duration
	// ListTimeout bounds listing a server's tools, all pages together. Default 15s.
	ListTimeout time.Duration
	// MaxOutputBytes caps the text Call returns, the truncation note included. Default 64 KiB.
	MaxOutputBytes int
}

// withDefaults returns a copy of o with every zero (or negative) field set to its default.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.StartTimeout <= 0 {
		r.StartTimeout = DefaultStartTimeout
	}
	if r.CallTimeout <= 0 {
		r.CallTimeout = DefaultCallTimeout
	}
	if r.ListTimeout <= 0 {
		r.ListTimeout = DefaultListTimeout
	}
	if r.MaxOutputBytes <= 0 {
		r.MaxOutputBytes = DefaultMaxOutputBytes
	}
	return r
}

// Tool is one tool of a downstream server, as offered to child agents.
type Tool struct {
	// Server is the configured server name.
	Server string
	// Name is the tool's name on its server.
	Name string
	// Qualified is "<server>__<tool>", the name Call routes.
	Qualified string
	// Description is the server's description of the tool.
	Description string
	// InputSchema is the tool's JSON schema for its arguments, as the server sent it.
	InputSchema json.RawMessage
	// ReadOnly is the server's readOnlyHint annotation (false when absent).
	ReadOnly bool
}

// Manager starts downstream MCP servers on demand and routes calls to their tools.
// The zero value is not usable; build one with NewManager.
type Manager struct {
	opts    Options
	log     *slog.Logger
	servers map[string]*server
	order   []string // server names in config order
	config  []error  // problems with the server list, reported by Tools
	now     func() time.Time
	graces  graces

	ctx    context.Context // parent of every start; cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed and wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup // start operations, reapers, stderr readers

	closeOnce sync.Once
	closeErr  error
}

// NewManager returns a Manager for servers. It starts no process: each server is started
// on first use. A server name that appears twice keeps its first entry; Tools reports the
// others. opts may be nil.
func NewManager(servers []config.MCPServer, opts *Options) *Manager {
	o := opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		opts:    o,
		log:     o.Logger,
		servers: make(map[string]*server, len(servers)),
		now:     time.Now,
		graces:  graces{stdin: 2 * time.Second, term: 2 * time.Second, kill: 5 * time.Second, drain: time.Second},
		ctx:     ctx,
		cancel:  cancel,
	}
	for i, cfg := range servers {
		if _, dup := m.servers[cfg.Name]; dup {
			m.config = append(m.config, fmt.Errorf("downstream: mcp_servers[%d]: server %q is defined twice; this entry is ignored", i, cfg.Name))
			continue
		}
		cfg.Args = slices.Clone(cfg.Args)
		m.servers[cfg.Name] = &server{m: m, cfg: cfg, log: m.log.With("server", cfg.Name)}
		m.order = append(m.order, cfg.Name)
	}
	return m
}

// goTracked runs f on a goroutine that Close waits for. It returns false, without running
// f, once Close has begun.
func (m *Manager) goTracked(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// isClosed reports whether Close has begun.
func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Tools starts every server not yet started, lists the tools of those not yet listed, and
// returns all tools sorted by qualified name. A server that fails to start or list is left
// out, and its error (naming the server) is joined into the returned error; the tools of
// the other servers are returned all the same. Servers are started in parallel, and ctx
// bounds the wait.
func (m *Manager) Tools(ctx context.Context) ([]Tool, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	type result struct {
		tools []Tool
		err   error
	}
	results := make([]result, len(m.order))
	var wg sync.WaitGroup
	for i, name := range m.order {
		wg.Go(func() {
			tools, _, err := m.servers[name].ready(ctx, false)
			results[i] = result{tools, err}
		})
	}
	wg.Wait()

	var tools []Tool
	errs := slices.Clone(m.config)
	for _, r := range results {
		tools = append(tools, r.tools...)
		if r.err != nil {
			errs = append(errs, fmt.Errorf("downstream: %w", r.err))
		}
	}
	slices.SortFunc(tools, func(a, b Tool) int { return strings.Compare(a.Qualified, b.Qualified) })
	return tools, errors.Join(errs...)
}

// Call calls the tool named by qualified ("<server>__<tool>") with args (a JSON object;
// empty or null means no arguments), starting its server if it is not running.
//
// text is the result's text content joined by newlines, other content summarised (e.g.
// "[image/png 1234 bytes]"), capped at Options.MaxOutputBytes with a note saying so.
// isError is the result's isError: the tool ran and reported a failure. err is set when no
// result came back — unknown server or tool, server not startable, server exited, timeout,
// ctx ended, protocol error — and its message names the server and the tool.
func (m *Manager) Call(ctx context.Context, qualified string, args json.RawMessage) (text string, isError bool, err error) {
	if m.isClosed() {
		return "", false, ErrClosed
	}
	name, tool, ok := strings.Cut(qualified, Separator)
	s := m.servers[name]
	if !ok || tool == "" || s == nil {
		return "", false, fmt.Errorf("downstream: %q: %w: no configured server %q (want <server>%s<tool>; servers: %s)",
			qualified, ErrUnknownTool, name, Separator, strings.Join(m.order, ", "))
	}
	arguments, err := callArguments(args)
	if err != nil {
		return "", false, fmt.Errorf("downstream: server %q tool %q: %w", name, tool, err)
	}
	tools, c, err := s.ready(ctx, true)
	if err != nil {
		return "", false, fmt.Errorf("downstream: call %s: %w", qualified, err)
	}
	if !slices.ContainsFunc(tools, func(t Tool) bool { return t.Name == tool }) {
		names := make([]string, len(tools))
		for i, t := range tools {
			names[i] = t.Name
		}
		return "", false, fmt.Errorf("downstream: %q: %w: server %q has no tool %q (tools: %s)",
			qualified, ErrUnknownTool, name, tool, strings.Join(names, ", "))
	}
	res, err := s.call(ctx, c, tool, arguments)
	if err != nil {
		return "", false, err
	}
	return capText(resultText(res), m.opts.MaxOutputBytes), res.IsError, nil
}

// callArguments checks that raw is a JSON object (or empty/null, meaning {}).
func callArguments(raw json.RawMessage) (json.RawMessage, error) {
	trimmed := strings.TrimSpace(string(raw))
	if trimmed == "" || trimmed == "null" {
		return json.RawMessage("{}"), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("arguments must be a JSON object: %w", err)
	}
	return raw, nil
}

// Close stops every server: closes its stdin, then signals its process group (SIGTERM,
// then SIGKILL), each step bounded; reaps the processes; and waits for every goroutine the
// Manager started. It may be called more than once and returns the first call's result.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		m.cancel() // aborts starts in flight; they shut their own process down

		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for _, name := range m.order {
			c := m.servers[name].detach()
			if c == nil {
				continue
			}
			wg.Go(func() {
				if err := c.shutdown(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		m.wg.Wait()
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// toolFrom converts a listed mcp.Tool of server.
func toolFrom(server string, t mcp.Tool) Tool {
	out := Tool{
		Server:      server,
		Name:        t.Name,
		Qualified:   server + Separator + t.Name,
		Description: t.Description,
		ReadOnly:    t.Annotations.ReadOnlyHint != nil && *t.Annotations.ReadOnlyHint,
	}
	// mcp.Tool's MarshalJSON knows whether the schema came raw or structured.
	if b, err := json.Marshal(t); err == nil {
		var fields struct {
			InputSchema json.RawMessage `json:"inputSchema"`
		}
		if json.Unmarshal(b, &fields) == nil {
			out.InputSchema = fields.InputSchema
		}
	}
	if len(out.InputSchema) == 0 {
		out.InputSchema = json.RawMessage(`{"type":"object"}`)
	}
	return out
}
