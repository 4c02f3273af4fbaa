package tools

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// FuzzLimits feeds arbitrary argument documents to the [limits] checks and
// to what a transcript records of them: neither may panic, a call within
// the limits is within call_bytes, and what is recorded is bounded (the
// arguments when small, else a summary of at most a few KiB) whatever the
// input.
func FuzzLimits(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"query":"deploy logs"}`, `{"limit":9223372036854775807}`, `{"limit":1e400}`,
		`{"message":"` + strings.Repeat("m", 3000) + `"}`, `{"a":[1,2,{"b":"c"}]}`, `[1,2,3]`, `"x"`, `not json`,
		`{"title":"` + strings.Repeat("é", 800) + `"}`, `{"n":-9007199254740993}`, `{"n":9007199254740992}`,
	} {
		f.Add([]byte(s), "sessions_search", false)
		f.Add([]byte(s), "task_list", true)
	}
	small := config.Limits{MessageBytes: 2048, StringBytes: 512, CallBytes: 4096, SearchQueryBytes: 64, SearchQueryTerms: 4, SearchScoreBytes: 1024}
	f.Fuzz(func(t *testing.T, raw []byte, tool string, isErr bool) {
		msg := checkLimits(small, tool, raw)
		if msg == "" && len(raw) > small.CallBytes {
			t.Fatalf("%d bytes passed call_bytes %d", len(raw), small.CallBytes)
		}
		if msg != "" && !strings.Contains(msg, "[limits]") && !strings.Contains(msg, "2^53") && !strings.Contains(msg, "number") {
			t.Fatalf("refusal without its limit: %q", msg)
		}
		rec := RecordedArgs(raw, Result{IsError: isErr})
		max := recordArgsMax
		if isErr {
			max = refusedArgsMax
		}
		if len(raw) > max {
			if len(rec) > 32<<10 {
				t.Fatalf("summary of %d bytes is %d bytes", len(raw), len(rec))
			}
			if !json.Valid(rec) {
				t.Fatalf("summary is not JSON: %q", rec)
			}
		} else if string(rec) != string(raw) {
			t.Fatal("small arguments were not recorded as they are")
		}
		// The byte prefilter never hides a refusal of the full check.
		if got, full := ExactIntegers(raw), exactIntegers(raw); got != full {
			t.Fatalf("ExactIntegers(%q) = %q, the full check says %q", raw, got, full)
		}
	})
}
