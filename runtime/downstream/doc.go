// Package downstream owns the MCP servers that child agents borrow tools from: the
// [[mcp_servers]] entries of the configuration. Each entry is a command that speaks MCP
// over stdio; a Manager starts it as a child process, talks to it as an MCP client
// (github.com/mark3labs/mcp-go/client) and offers its tools under qualified names.
//
// # Naming
//
// A downstream tool is offered as "<server>__<tool>": the configured server name, two
// underscores, and the tool name exactly as the server reports it. Server names never
// contain "__" (the config loader refuses them), so a qualified name is split at its first
// "__" and everything after it is the tool name, which may itself contain "__". Tool names
// are passed through untouched: a name with characters outside [A-Za-z0-9_-] (a dot, a
// slash, a space) is still listed and routed, but some model providers refuse such function
// names, so whoever hands the list to a model must map or drop them.
//
// # Lifecycle
//
//   - NewManager starts nothing. A server's process is started on first use: the first
//     Tools call, or the first Call routed to it. Starting means spawning the command (with
//     the parent's environment plus the entry's Env, in our working directory) in its own
//     process group, then the MCP handshake (mcp-go negotiates 2026-07-28 or falls back to
//     the initialize handshake), within Options.StartTimeout. Concurrent first uses share
//     one start.
//   - The first successful listing of a server's tools (every page, within
//     Options.ListTimeout) is cached for the Manager's life; a restart does not re-list.
//     Tools reports a server that cannot be started or listed as one error among those it
//     joins, and still returns the tools of the others.
//   - Call runs one tools/call within Options.CallTimeout and the caller's context. When
//     either ends first the call fails at once and the server is sent
//     notifications/cancelled; the server keeps running.
//   - A server whose process exits (or whose pipe breaks) fails the calls in flight with an
//     error, not a hang, and is started again by the next call that needs it — at most one
//     start per call, and never a retry of the call itself, since tools may have effects.
//     After three failed starts within a minute a server is not started again for 30
//     seconds: calls fail at once with an error that says so and gives the last failure.
//   - A child's stderr is read line by line and logged at debug level with the server's
//     name; when a child exits unexpectedly its last lines are logged at warn level. Nothing
//     a child writes reaches our stdout.
//   - Close shuts every child down (stdin closed, then SIGTERM, then SIGKILL to its process
//     group, each step bounded), reaps it, and waits for every goroutine the Manager
//     started. Close is idempotent; calls after it fail with ErrClosed.
//
// All methods are safe for concurrent use.
package downstream
