package config

import "fmt"

// Limits is [limits]: the size of what one call may ask the server to
// take in or work through. The defaults are far above what a real client
// sends; a call over a limit is refused at once with an error that names
// the argument, the limit and the key that raises it.
type Limits struct {
	// MessageBytes bounds one message: a sessions_send message, a spawn
	// task, a yield result, and any message the store appends.
	MessageBytes int `toml:"message_bytes" json:"message_bytes"`
	// StringBytes bounds any other string argument of a tool call.
	StringBytes int `toml:"string_bytes" json:"string_bytes"`
	// CallBytes bounds the whole JSON arguments of one tool call.
	CallBytes int `toml:"call_bytes" json:"call_bytes"`
	// SearchQueryBytes and SearchQueryTerms bound a sessions_search query.
	SearchQueryBytes int `toml:"search_query_bytes" json:"search_query_bytes"`
	SearchQueryTerms int `toml:"search_query_terms" json:"search_query_terms"`
	// SearchScoreBytes is the largest stored message text search reads to
	// score it; a longer message is scored without being read (each query
	// word once, its length estimated from its size).
	SearchScoreBytes int `toml:"search_score_bytes" json:"search_score_bytes"`
}

// DefaultLimits are the built-in [limits].
func DefaultLimits() Limits {
	return Limits{
		MessageBytes:     1 << 20, // 1 MiB
		StringBytes:      64 << 10,
		CallBytes:        2 << 20,
		SearchQueryBytes: 1024,
		SearchQueryTerms: 32,
		SearchScoreBytes: 16 << 10,
	}
}

// limitRanges are each [limits] key's accepted range.
var limitRanges = []struct {
	key      string
	get      func(*Limits) int
	min, max int
}{
	{"message_bytes", func(l *Limits) int { return l.MessageBytes }, 1 << 10, 64 << 20},
	{"string_bytes", func(l *Limits) int { return l.StringBytes }, 256, 64 << 20},
	{"call_bytes", func(l *Limits) int { return l.CallBytes }, 4 << 10, 128 << 20},
	{"search_query_bytes", func(l *Limits) int { return l.SearchQueryBytes }, 16, 1 << 20},
	{"search_query_terms", func(l *Limits) int { return l.SearchQueryTerms }, 1, 1024},
	{"search_score_bytes", func(l *Limits) int { return l.SearchScoreBytes }, 1 << 10, 16 << 20},
}

func (c *Config) validateLimits(add func(path, format string, args ...any)) {
	d := DefaultLimits()
	for _, r := range limitRanges {
		if v := r.get(&c.Limits); v < r.min || v > r.max {
			add("limits."+r.key, "must be between %d and %d (default %d), got %d", r.min, r.max, r.get(&d), v)
		}
	}
	if c.Limits.CallBytes < c.Limits.MessageBytes {
		add("limits.call_bytes", "must be at least limits.message_bytes (%d), or a message of the largest size could never be sent; got %d", c.Limits.MessageBytes, c.Limits.CallBytes)
	}
	if c.MCP.DrainSeconds < 0 || c.MCP.DrainSeconds > 3600 {
		add("mcp.drain_seconds", "must be between 0 and 3600 (default 10), got %d", c.MCP.DrainSeconds)
	}
}

// LimitError is the message of a refusal for an input over a limit: what,
// its size, the limit, and the key that raises it.
func LimitError(what string, got, limit int, key string) string {
	return fmt.Sprintf("%s is %d bytes, over the limit of %d bytes (raise [limits] %s to allow it)", what, got, limit, key)
}

// Effective returns l with every unset (zero or negative) field at its
// default, for configurations built in code rather than loaded.
func (l Limits) Effective() Limits {
	d := DefaultLimits()
	pick := func(v, def int) int {
		if v <= 0 {
			return def
		}
		return v
	}
	return Limits{
		MessageBytes:     pick(l.MessageBytes, d.MessageBytes),
		StringBytes:      pick(l.StringBytes, d.StringBytes),
		CallBytes:        pick(l.CallBytes, d.CallBytes),
		SearchQueryBytes: pick(l.SearchQueryBytes, d.SearchQueryBytes),
		SearchQueryTerms: pick(l.SearchQueryTerms, d.SearchQueryTerms),
		SearchScoreBytes: pick(l.SearchScoreBytes, d.SearchScoreBytes),
	}
}
