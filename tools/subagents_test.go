package tools

import (
	"strings"
	"testing"
)

func TestUniquePrefixes(t *testing.T) {
	ids := []string{
		"01a22945-60fd-708c-9d4a-3ebeab139fba",
		"01a22945-60fd-7111-9d4a-3ebeab139fbb", // same millisecond as the first
		"01a22946-0000-7000-8000-000000000000",
		"01a22946-0000-7000-8000-000000000000", // a duplicate row (the same run twice)
		"short",
	}
	got := uniquePrefixes(ids, 8)
	want := []string{"01a22945-60fd-70", "01a22945-60fd-71", "01a22946", "01a22946", "short"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("uniquePrefixes[%d] = %q, want %q", i, got[i], want[i])
		}
	}
	// Every shown prefix selects exactly its own id among distinct ids.
	for i, p := range got[:3] {
		for j, id := range ids[:3] {
			if strings.HasPrefix(id, p) != (i == j) && !(ids[i] == id) {
				t.Errorf("prefix %q of row %d also matches row %d", p, i, j)
			}
		}
	}
}
