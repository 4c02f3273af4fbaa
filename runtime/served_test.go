package runtime

import "testing"

func TestServedDiffers(t *testing.T) {
	for _, tc := range []struct {
		name, served string
		want         bool
	}{
		{"gpt-4o", "", false},
		{"gpt-4o", "gpt-4o", false},
		{"gpt-4o", "gpt-4o-2024-08-06", false},
		{"qwen2.5", "qwen2.5:latest", false},
		{"claude-x", "claude-x@20250101", false},
		{"qwen2.5", "qwen2.5:7b", false},
		{"gpt-4o", "gpt-4o-mini", true},
		{"gpt-4o", "gpt-3.5-turbo", true},
		{"big-model", "small-model-q4", true},
		{"gpt-4o-2024-08-06", "gpt-4o", true},
	} {
		if got := ServedDiffers(tc.name, tc.served); got != tc.want {
			t.Errorf("ServedDiffers(%q, %q) = %v, want %v", tc.name, tc.served, got, tc.want)
		}
	}
}
