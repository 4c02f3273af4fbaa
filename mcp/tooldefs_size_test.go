package mcp

import (
	"context"
	"encoding/json"
	"sort"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sessionplane/sessionplane/tools"
)

// maxToolDefBytes bounds what every client pays in context on every turn:
// name + description + inputSchema of every listed tool.
const maxToolDefBytes = 12 * 1024

// TestToolDefinitionSize measures the model-facing part of tools/list (name,
// description and inputSchema; output schemas are for clients, not models)
// and prints it per tool, so a growing description shows up in review.
func TestToolDefinitionSize(t *testing.T) {
	f := newFixture(t, "")
	res, err := f.c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name string
		size int
	}
	canonical := map[string]bool{}
	for _, n := range tools.Catalog {
		canonical[n] = n != "sessions_yield" // children only: not listed to clients
	}
	for _, n := range tools.Orchestration { // beyond the seeds: measured, reported in the total
		canonical[n] = false
	}
	var rows []row
	total, seed, seedTools := 0, 0, 0
	for _, tool := range res.Tools {
		schema := tool.RawInputSchema
		if len(schema) == 0 {
			b, err := json.Marshal(tool.InputSchema)
			if err != nil {
				t.Fatal(err)
			}
			schema = b
		}
		n := len(tool.Name) + len(tool.Description) + len(schema)
		rows = append(rows, row{tool.Name, n})
		total += n
		if canonical[tool.Name] {
			seed += n
			seedTools++
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].size > rows[j].size })
	for _, r := range rows {
		t.Logf("%-17s %6d bytes", r.name, r.size)
	}
	t.Logf("total: %d bytes for %d tools; the %d seed tools: %d bytes (limit %d)", total, len(rows), seedTools, seed, maxToolDefBytes)
	if seedTools != 15 {
		t.Errorf("measured %d of the seed tools, want the 15 an unrestricted client sees", seedTools)
	}
	if seed > maxToolDefBytes {
		t.Errorf("the seed tools' definitions are %d bytes, over the %d-byte budget: shorten descriptions or schema texts", seed, maxToolDefBytes)
	}
}
