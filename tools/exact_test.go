package tools

import "testing"

// MayHoldInexact is a prefilter of ExactIntegers: for every document it
// lets through without decoding, the full check has nothing to refuse.
func TestMayHoldInexactNeverHidesARefusal(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		inexact bool // what MayHoldInexact must say
	}{
		{`{}`, false},
		{`{"name":"sessions_list","arguments":{}}`, false},
		{`{"limit":20,"offset":-3,"ratio":0.125,"_meta":{"progressToken":7}}`, false},
		{`{"n":900719925474099}`, false},  // 15 digits: always exact
		{`{"n":9007199254740993}`, true},  // over 2^53
		{`{"n":-9007199254740993}`, true}, // under -2^53
		{`{"n":9007199254740992}`, true},  // 2^53 itself: decoded, and exact
		{`{"n":1e400}`, true},
		{`{"n":2.5E3}`, true},
		{`{"s":"agent2e"}`, true}, // a string that looks like an exponent: decoded, nothing refused
	} {
		got := MayHoldInexact([]byte(tc.raw))
		if got != tc.inexact {
			t.Errorf("MayHoldInexact(%s) = %v, want %v", tc.raw, got, tc.inexact)
		}
		if full := exactIntegers([]byte(tc.raw)); !got && full != "" {
			t.Errorf("%s: prefilter let through what the full check refuses: %s", tc.raw, full)
		}
		if ExactIntegers([]byte(tc.raw)) != exactIntegers([]byte(tc.raw)) {
			t.Errorf("%s: ExactIntegers differs from the full check", tc.raw)
		}
	}
}
