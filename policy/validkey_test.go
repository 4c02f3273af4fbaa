package policy

import (
	"strings"
	"testing"
)

// What was seen 6: "agent:main:" (an empty name) was accepted as a key.
func TestValidKeyRefusesEmptyNames(t *testing.T) {
	for _, key := range []string{"agent:main:", "agent::main", ":main", "agent:main::subagent:x", "cron:"} {
		err := ValidKey(key)
		if err == nil || !strings.Contains(err.Error(), "empty name") {
			t.Errorf("ValidKey(%q) = %v, want an empty-name error", key, err)
		}
	}
	for _, key := range []string{"agent:main:main", "cron:job1", "agent:main:subagent:1:subagent:2", "custom"} {
		if err := ValidKey(key); err != nil {
			t.Errorf("ValidKey(%q) = %v", key, err)
		}
	}
}
