package runtime

import (
	"testing"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
)

// Each field's smallest non-zero limit wins, and names its config key.
func TestResolveLimits(t *testing.T) {
	cfg := config.Default()
	cfg.Agents.Defaults.Budget = config.Budget{RunTokens: 5000, DayUSD: 10}
	cfg.Agents.List = []config.Agent{{ID: "main", Budget: config.Budget{RunTokens: 8000, TreeTokens: 20000}}, {ID: "other", Budget: config.Budget{RunTokens: 100}}}
	r := &Runtime{cfg: cfg}
	layers := []policy.Layer{{Name: "p", Path: "agents.presets.p", Preset: config.Preset{Budget: config.Budget{TreeTokens: 15000, DayUSD: 20}}}}
	l := r.ResolveLimits("main", layers, config.Budget{RunUSD: 0.5, TreeTokens: 30000})
	for _, c := range []struct {
		got  Limit
		want Limit
	}{
		{l.RunTokens, Limit{5000, "agents.defaults.budget.run_tokens"}},
		{l.RunUSD, Limit{0.5, "the spawn's budget.run_usd"}},
		{l.TreeTokens, Limit{15000, "agents.presets.p.budget.tree_tokens"}},
		{l.TreeUSD, Limit{}},
		{l.DayTokens, Limit{}},
		{l.DayUSD, Limit{10, "agents.defaults.budget.day_usd"}},
	} {
		if c.got != c.want {
			t.Errorf("got %+v, want %+v", c.got, c.want)
		}
	}
	if l := r.ResolveLimits("other", nil, config.Budget{}); l.RunTokens != (Limit{100, "agents.list[1].budget.run_tokens"}) {
		t.Errorf("agent budget: %+v", l.RunTokens)
	}
}
