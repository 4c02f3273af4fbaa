package tools

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strings"
	"unicode"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// messageArgs are the argument names that carry a message (bounded by
// [limits] message_bytes); every other string argument is bounded by
// [limits] string_bytes.
var messageArgs = map[string]bool{"message": true, "task": true, "context": true, "result": true}

// maxExactInt is the largest integer a JSON number holds exactly in every
// client (2^53).
const maxExactInt = 1 << 53

// limits returns the effective [limits] of the registry's configuration.
func (r *Registry) limits() config.Limits {
	if r.env == nil || r.env.Config == nil {
		return config.DefaultLimits()
	}
	return r.env.Config.Limits.Effective()
}

// checkLimits refuses arguments over [limits] before anything else reads
// them: the whole call's size first (so an oversized call is never
// decoded), then every string, every integer and, for sessions_search, the
// query. It returns "" when the call is within its limits.
func checkLimits(l config.Limits, tool string, raw json.RawMessage) string {
	if len(raw) > l.CallBytes {
		return config.LimitError("the arguments of "+tool, len(raw), l.CallBytes, "call_bytes")
	}
	if emptyArgs(raw) {
		return "" // nothing to walk
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "" // not JSON: validation reports it
	}
	if tool == "sessions_search" {
		if m, ok := v.(map[string]any); ok {
			if q, ok := m["query"].(string); ok {
				if msg := checkQuery(l, q); msg != "" {
					return msg
				}
			}
		}
	}
	return walkLimits(l, "", v)
}

// checkQuery bounds a search query's size and number of words.
func checkQuery(l config.Limits, q string) string {
	if len(q) > l.SearchQueryBytes {
		return config.LimitError("query", len(q), l.SearchQueryBytes, "search_query_bytes")
	}
	n := len(strings.FieldsFunc(q, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' }))
	if n > l.SearchQueryTerms {
		return fmt.Sprintf("query has %d words, over the limit of %d (raise [limits] search_query_terms to allow it, or search for fewer words)", n, l.SearchQueryTerms)
	}
	return ""
}

func walkLimits(l config.Limits, path string, v any) string {
	switch x := v.(type) {
	case string:
		name := path[strings.LastIndexByte(path, '.')+1:]
		if i := strings.IndexByte(name, '['); i >= 0 {
			name = name[:i]
		}
		if messageArgs[name] {
			if len(x) > l.MessageBytes {
				return config.LimitError(argName(path), len(x), l.MessageBytes, "message_bytes")
			}
		} else if len(x) > l.StringBytes {
			return config.LimitError(argName(path), len(x), l.StringBytes, "string_bytes")
		}
	case json.Number:
		if msg := exactInt(path, string(x)); msg != "" {
			return msg
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if msg := walkLimits(l, p, x[k]); msg != "" {
				return msg
			}
		}
	case []any:
		for i, e := range x {
			if msg := walkLimits(l, fmt.Sprintf("%s[%d]", path, i), e); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func argName(path string) string {
	if path == "" {
		return "the argument"
	}
	return "argument " + path
}

// exactInt refuses an integer a JSON number cannot hold exactly (beyond
// ±2^53): it would be rounded silently (9223372036854775807 becomes
// 9223372036854775808). Fractions and exponents are left to the schema.
func exactInt(path, num string) string {
	if strings.ContainsAny(num, ".eE") {
		f, err := json.Number(num).Float64()
		if err != nil || math.IsInf(f, 0) {
			return fmt.Sprintf("%s: %s is not a number this server can represent", argName(path), num)
		}
		return ""
	}
	n, ok := new(big.Int).SetString(num, 10)
	if !ok {
		return fmt.Sprintf("%s: %s is not a number", argName(path), num)
	}
	if n.CmpAbs(big.NewInt(maxExactInt)) > 0 {
		return fmt.Sprintf("%s: the integer %s does not fit exactly in a JSON number (at most ±2^53 = %d); send a smaller value", argName(path), num, int64(maxExactInt))
	}
	return ""
}

// recordArgsMax bounds the arguments recorded in a transcript for a call
// that was accepted; refusedArgsMax for one that failed or was refused.
const (
	recordArgsMax  = 16 << 10
	refusedArgsMax = 1 << 10
)

// RecordedArgs is what a transcript keeps of a call's arguments: the
// arguments themselves when they are small, else a bounded summary (the
// size and, for each top-level argument, its type, size and first
// characters). A refused or failed call keeps a summary above 1 KiB, an
// accepted one above 16 KiB, so what a call can make the store keep is
// bounded whatever it sends.
func RecordedArgs(raw json.RawMessage, res Result) json.RawMessage {
	max := recordArgsMax
	if res.IsError {
		max = refusedArgsMax
	}
	if len(raw) <= max {
		return raw
	}
	return summarizeArgs(raw)
}

func summarizeArgs(raw json.RawMessage) json.RawMessage {
	type argSummary struct {
		Type  string `json:"type"`
		Bytes int    `json:"bytes"`
		Start string `json:"start,omitempty"`
	}
	sum := struct {
		Omitted string                `json:"_omitted"`
		Bytes   int                   `json:"bytes"`
		Args    map[string]argSummary `json:"args,omitempty"`
	}{Omitted: "arguments too large to record; a summary is kept", Bytes: len(raw)}
	var m map[string]json.RawMessage
	if len(raw) <= 64<<20 && json.Unmarshal(raw, &m) == nil {
		sum.Args = map[string]argSummary{}
		n := 0
		for k, v := range m {
			if n == 32 {
				break
			}
			n++
			if len(k) > 64 {
				k = k[:64]
			}
			a := argSummary{Bytes: len(v)}
			switch {
			case len(v) > 0 && v[0] == '"':
				a.Type = "string"
				var s string
				if json.Unmarshal(v, &s) == nil {
					a.Start = shorten(s, 80)
				}
			case len(v) > 0 && v[0] == '{':
				a.Type = "object"
			case len(v) > 0 && v[0] == '[':
				a.Type = "array"
			default:
				a.Type = "value"
				a.Start = shorten(string(v), 80)
			}
			sum.Args[k] = a
		}
	}
	b, _ := json.Marshal(sum)
	return b
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// ExactIntegers checks every number of a JSON document (a tool call's
// arguments as the client sent them) and describes the first integer a
// JSON number cannot hold exactly, or returns "".
func ExactIntegers(raw json.RawMessage) string {
	if !MayHoldInexact(raw) {
		return ""
	}
	return exactIntegers(raw)
}

// MayHoldInexact reports whether raw may hold a number ExactIntegers
// refuses, from its bytes alone: such a number has 16 digits in a row
// (2^53 has 16; a decimal too large for a float64 has hundreds) or an
// exponent (a digit followed by e or E). When it returns false, every
// number in raw is exact and the document need not be decoded (most calls:
// no arguments or small ones). Bytes inside strings count too, so it may
// say true for a document that is fine, never false for one that is not.
func MayHoldInexact(raw []byte) bool {
	run := 0
	for _, c := range raw {
		switch {
		case c >= '0' && c <= '9':
			run++
			if run >= 16 {
				return true
			}
		case (c == 'e' || c == 'E') && run > 0:
			return true
		default:
			run = 0
		}
	}
	return false
}

func exactIntegers(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return ""
	}
	return walkNumbers("", v)
}

func walkNumbers(path string, v any) string {
	switch x := v.(type) {
	case json.Number:
		return exactInt(path, string(x))
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if msg := walkNumbers(p, x[k]); msg != "" {
				return msg
			}
		}
	case []any:
		for i, e := range x {
			if msg := walkNumbers(fmt.Sprintf("%s[%d]", path, i), e); msg != "" {
				return msg
			}
		}
	}
	return ""
}
