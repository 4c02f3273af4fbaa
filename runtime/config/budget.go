package config

import "fmt"

// Budget limits what runs may spend ([agents.defaults.budget], an agent's
// budget, a preset's budget, or a spawn's budget argument). Tokens count
// input + output; USD is the estimate from [[models]] cost. 0 = no limit.
// Where several apply, each field's smallest non-zero limit wins.
type Budget struct {
	RunTokens  int64   `toml:"run_tokens" json:"run_tokens,omitempty"`   // one run
	RunUSD     float64 `toml:"run_usd" json:"run_usd,omitempty"`         // one run
	TreeTokens int64   `toml:"tree_tokens" json:"tree_tokens,omitempty"` // a spawn tree: a top-level child and all its descendants
	TreeUSD    float64 `toml:"tree_usd" json:"tree_usd,omitempty"`       // a spawn tree
	DayTokens  int64   `toml:"day_tokens" json:"day_tokens,omitempty"`   // an agent's runs per UTC day
	DayUSD     float64 `toml:"day_usd" json:"day_usd,omitempty"`         // an agent's runs per UTC day
}

// IsZero reports whether the budget sets no limit.
func (b Budget) IsZero() bool { return b == Budget{} }

// Check returns the problems of a budget at path (negative limits).
func (b Budget) Check(path string) []Problem {
	var probs []Problem
	ints := []struct {
		k string
		v int64
	}{{"run_tokens", b.RunTokens}, {"tree_tokens", b.TreeTokens}, {"day_tokens", b.DayTokens}}
	for _, f := range ints {
		if f.v < 0 {
			probs = append(probs, Problem{Path: path + "." + f.k, Msg: fmt.Sprintf("must be ≥ 0 (0 = no limit), got %d", f.v)})
		}
	}
	floats := []struct {
		k string
		v float64
	}{{"run_usd", b.RunUSD}, {"tree_usd", b.TreeUSD}, {"day_usd", b.DayUSD}}
	for _, f := range floats {
		if f.v < 0 {
			probs = append(probs, Problem{Path: path + "." + f.k, Msg: fmt.Sprintf("must be ≥ 0 (0 = no limit), got %g", f.v)})
		}
	}
	return probs
}

// AnyBudget reports whether any budget is configured.
func (c *Config) AnyBudget() bool {
	if !c.Agents.Defaults.Budget.IsZero() {
		return true
	}
	for _, a := range c.Agents.List {
		if !a.Budget.IsZero() {
			return true
		}
	}
	for _, p := range c.Agents.Presets {
		if !p.Budget.IsZero() {
			return true
		}
	}
	return false
}

func (c *Config) validateBudgets() []Problem {
	probs := c.Agents.Defaults.Budget.Check("agents.defaults.budget")
	for i, a := range c.Agents.List {
		probs = append(probs, a.Budget.Check(fmt.Sprintf("agents.list[%d].budget", i))...)
	}
	for _, n := range sortedKeys(c.Agents.Presets) {
		probs = append(probs, c.Agents.Presets[n].Budget.Check("agents.presets."+n+".budget")...)
	}
	for i := range probs {
		probs[i].Line = c.Line(probs[i].Path)
	}
	return probs
}
