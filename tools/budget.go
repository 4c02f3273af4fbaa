package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	spruntime "github.com/sessionplane/sessionplane/runtime"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// BudgetIn is a spawn's own spending limit; it only tightens the
// configured budgets.
type BudgetIn struct {
	Tokens     int64   `json:"tokens,omitempty" schema:"min=0"`
	USD        float64 `json:"usd,omitempty" schema:"min=0"`
	TreeTokens int64   `json:"tree_tokens,omitempty" schema:"min=0"`
	TreeUSD    float64 `json:"tree_usd,omitempty" schema:"min=0"`
}

func (b *BudgetIn) budget() config.Budget {
	if b == nil {
		return config.Budget{}
	}
	return config.Budget{RunTokens: b.Tokens, RunUSD: b.USD, TreeTokens: b.TreeTokens, TreeUSD: b.TreeUSD}
}

// decodeBudget reads a spawn's budget argument ({tokens, usd, tree_tokens,
// tree_usd}, each ≥ 0); nil is no budget.
func decodeBudget(v any) (config.Budget, error) {
	if v == nil {
		return config.Budget{}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return config.Budget{}, fmt.Errorf("budget: %v", err)
	}
	var in BudgetIn
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return config.Budget{}, fmt.Errorf("budget: %v (use {tokens, usd, tree_tokens, tree_usd})", err)
	}
	if in.Tokens < 0 || in.USD < 0 || in.TreeTokens < 0 || in.TreeUSD < 0 {
		return config.Budget{}, errors.New("budget: limits must be ≥ 0 (0 = no limit)")
	}
	return in.budget(), nil
}

// runBudget lists a run's limits with spent and left (nil when none).
func runBudget(ctx context.Context, call *Call, r *store.Run) []spruntime.BudgetLine {
	if call.Env.Runs == nil {
		return nil
	}
	return call.Env.Runs.RunBudget(ctx, r)
}

func renderBudget(lines []spruntime.BudgetLine) string {
	if len(lines) == 0 {
		return ""
	}
	parts := make([]string, 0, len(lines))
	for _, l := range lines {
		if l.Unit == "usd" {
			parts = append(parts, fmt.Sprintf("%s $%.4f of $%.4f spent, $%.4f left", l.Scope, l.Spent, l.Limit, l.Left))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s of %s tokens spent, %s left", l.Scope, humanTokens(int64(l.Spent)), humanTokens(int64(l.Limit)), humanTokens(int64(l.Left))))
		}
	}
	return "Budget: " + strings.Join(parts, " · ")
}

// limitLines lists the limits a run would get, for policy_explain.
func limitLines(l spruntime.Limits) []string {
	var out []string
	add := func(name string, lim spruntime.Limit, usd bool) {
		if lim.Value <= 0 {
			return
		}
		v := fmt.Sprintf("%d tokens", int64(lim.Value))
		if usd {
			v = fmt.Sprintf("$%.4f", lim.Value)
		}
		out = append(out, fmt.Sprintf("%s %s (%s)", name, v, lim.Key))
	}
	add("run", l.RunTokens, false)
	add("run", l.RunUSD, true)
	add("tree", l.TreeTokens, false)
	add("tree", l.TreeUSD, true)
	add("day", l.DayTokens, false)
	add("day", l.DayUSD, true)
	return out
}
