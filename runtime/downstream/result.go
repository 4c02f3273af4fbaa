package downstream

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
)

// resultText renders a tool result as text: text content as is, embedded text resources
// with their URI, everything else as a one-line summary. Parts are joined by newlines. A
// result with no content but structured content renders that as JSON.
func resultText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		parts = append(parts, contentText(c))
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		if raw := res.RawStructuredContent; len(raw) > 0 {
			parts = append(parts, string(raw))
		} else if b, err := json.Marshal(res.StructuredContent); err == nil {
			parts = append(parts, string(b))
		}
	}
	return strings.Join(parts, "\n")
}

// contentText renders one content block.
func contentText(c mcp.Content) string {
	switch c := c.(type) {
	case mcp.TextContent:
		return c.Text
	case *mcp.TextContent:
		return c.Text
	case mcp.ImageContent:
		return mediaSummary(c.MIMEType, c.Data)
	case *mcp.ImageContent:
		return mediaSummary(c.MIMEType, c.Data)
	case mcp.AudioContent:
		return mediaSummary(c.MIMEType, c.Data)
	case *mcp.AudioContent:
		return mediaSummary(c.MIMEType, c.Data)
	case mcp.ResourceLink:
		return linkSummary(c)
	case *mcp.ResourceLink:
		return linkSummary(*c)
	case mcp.EmbeddedResource:
		return resourceText(c.Resource)
	case *mcp.EmbeddedResource:
		return resourceText(c.Resource)
	default:
		return fmt.Sprintf("[%T content]", c)
	}
}

// mediaSummary stands in for base64 data: "[image/png 1234 bytes]".
func mediaSummary(mimeType, data string) string {
	if mimeType == "" {
		mimeType = "application/octet-stream"
	}
	return fmt.Sprintf("[%s %d bytes]", mimeType, base64Len(data))
}

// base64Len is the decoded length of standard base64 data (padding optional).
func base64Len(s string) int {
	s = strings.TrimRight(s, "=")
	return len(s) * 3 / 4
}

// linkSummary renders a resource link: "[resource link file:///x (x)]".
func linkSummary(l mcp.ResourceLink) string {
	return fmt.Sprintf("[resource link %s (%s)]", l.URI, l.Name)
}

// resourceText renders an embedded resource: a text resource as its URI and text, a blob
// as a summary.
func resourceText(r mcp.ResourceContents) string {
	switch r := r.(type) {
	case mcp.TextResourceContents:
		return fmt.Sprintf("[resource %s]\n%s", r.URI, r.Text)
	case *mcp.TextResourceContents:
		return fmt.Sprintf("[resource %s]\n%s", r.URI, r.Text)
	case mcp.BlobResourceContents:
		return fmt.Sprintf("[resource %s %s]", r.URI, strings.Trim(mediaSummary(r.MIMEType, r.Blob), "[]"))
	case *mcp.BlobResourceContents:
		return fmt.Sprintf("[resource %s %s]", r.URI, strings.Trim(mediaSummary(r.MIMEType, r.Blob), "[]"))
	default:
		return "[resource]"
	}
}

// capText cuts text to at most limit bytes, the note saying so included, at a UTF-8
// boundary.
func capText(text string, limit int) string {
	if len(text) <= limit {
		return text
	}
	note := func(shown int) string {
		return fmt.Sprintf("\n[output truncated: %d of %d bytes shown]", shown, len(text))
	}
	head := truncateUTF8(text, max(0, limit-len(note(limit))))
	return head + note(len(head))
}

// truncateUTF8 returns the longest prefix of s of at most n bytes that does not split a
// UTF-8 sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
