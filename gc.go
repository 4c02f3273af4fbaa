package main

import "runtime/debug"

// defaultGCPercent is the GC target (GOGC) the server runs with when the
// environment sets none. The server keeps its state in the store, so its
// live heap is small (1–2 MB serving tool calls): at Go's default of 100
// the heap goal sits at its 4 MB floor and a collection runs every ~90
// read-only calls, each stopping and scanning the stacks of every
// goroutine (mcp-go's stdio workers among them). At 400 the floor is 16
// MB: a sixth of the collections on read-only calls, 6–22 % less CPU per
// sessions_list / session_status call through stdio and ~5 % per spawn
// (BENCHMARKS.md, sixth session; measured at load 5–9, wall time not
// evaluated), for ~15 MB more peak RSS in the 1,000-spawn fan-out (74
// against 55–61 MB).
// GOGC (and GOMEMLIMIT) in the environment still decide when set.
const defaultGCPercent = 400

// tuneGC applies defaultGCPercent unless GOGC is set (the runtime read it
// at start), and reports whether it did.
func tuneGC(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(defaultGCPercent)
	return true
}
