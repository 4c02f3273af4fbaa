package tools

import (
	"fmt"
	"time"
	"unicode/utf8"

	spruntime "github.com/sessionplane/sessionplane/runtime"
)

// Fence marks text from another session or a tool as untrusted data (see
// runtime.Fence: one definition for tools and the agent loop).
func Fence(source, text string) string { return spruntime.Fence(source, text) }

// capText cuts s to at most n characters (runes), saying so.
func capText(s string, n int) (string, bool) {
	if utf8.RuneCountInString(s) <= n {
		return s, false
	}
	r := []rune(s)
	return string(r[:n]) + fmt.Sprintf(" …[%d more characters]", len(r)-n), true
}

func msToRFC3339(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// humanTokens writes 1234 as 1.2k (one definition, in the runtime).
func humanTokens(n int64) string { return spruntime.HumanTokens(n) }

// SessionURI is the MCP resource URI of a session's transcript.
func SessionURI(key string) string { return "session://" + key }
