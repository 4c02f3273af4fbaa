package downstream

import (
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

func TestResultText(t *testing.T) {
	tests := []struct {
		name string
		res  *mcp.CallToolResult
		want string
	}{
		{"text parts joined", &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent("a"), mcp.NewTextContent("b")}}, "a\nb"},
		{"image", &mcp.CallToolResult{Content: []mcp.Content{mcp.NewImageContent("AAAA", "image/png")}}, "[image/png 3 bytes]"},
		{"audio, padded", &mcp.CallToolResult{Content: []mcp.Content{mcp.NewAudioContent("AAA=", "audio/wav")}}, "[audio/wav 2 bytes]"},
		{"text resource", &mcp.CallToolResult{Content: []mcp.Content{mcp.NewEmbeddedResource(mcp.TextResourceContents{URI: "file:///a", Text: "body"})}}, "[resource file:///a]\nbody"},
		{"blob resource", &mcp.CallToolResult{Content: []mcp.Content{mcp.NewEmbeddedResource(mcp.BlobResourceContents{URI: "file:///b", MIMEType: "application/pdf", Blob: "AAAAAAAA"})}}, "[resource file:///b application/pdf 6 bytes]"},
		{"resource link", &mcp.CallToolResult{Content: []mcp.Content{mcp.NewResourceLink("file:///c", "c", "", "")}}, "[resource link file:///c (c)]"},
		{"structured only", &mcp.CallToolResult{StructuredContent: map[string]int{"n": 1}}, `{"n":1}`},
		{"empty", &mcp.CallToolResult{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resultText(tt.res); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCapText(t *testing.T) {
	tests := []struct {
		name, text string
		limit      int
		wantHead   string
	}{
		{"under the cap", "short", 100, "short"},
		{"cut", strings.Repeat("a", 500), 100, strings.Repeat("a", 100-len("\n[output truncated: 100 of 500 bytes shown]"))},
		{"cut before a split rune", strings.Repeat("é", 200), 100, strings.Repeat("é", 28)}, // 57 bytes left after the note: 28 runes,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := capText(tt.text, tt.limit)
			if len(got) > tt.limit {
				t.Errorf("len = %d, want ≤ %d", len(got), tt.limit)
			}
			head, _, _ := strings.Cut(got, "\n")
			if head != tt.wantHead {
				t.Errorf("head = %q, want %q", head, tt.wantHead)
			}
		})
	}
}
