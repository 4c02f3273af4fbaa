package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// StatusBudget is the outcome of a run stopped by a spending limit.
const StatusBudget = store.RunBudget

// Limit is one spending limit in force and the config key that set it.
type Limit struct {
	Value float64 // tokens or USD; 0 = none
	Key   string  // the config key (or call argument) that set it
}

// Limits are the limits in force for a run: the smallest non-zero value
// of each field across [agents.defaults.budget], the agent's budget, every
// preset layer's budget and the call's budget.
type Limits struct {
	RunTokens, RunUSD, TreeTokens, TreeUSD, DayTokens, DayUSD Limit
}

func (l Limits) any() bool {
	for _, x := range []Limit{l.RunTokens, l.RunUSD, l.TreeTokens, l.TreeUSD, l.DayTokens, l.DayUSD} {
		if x.Value > 0 {
			return true
		}
	}
	return false
}

func tighten(l *Limit, v float64, key string) {
	if v > 0 && (l.Value == 0 || v < l.Value) {
		*l = Limit{Value: v, Key: key}
	}
}

func (l *Limits) add(b config.Budget, path string) {
	tighten(&l.RunTokens, float64(b.RunTokens), path+".run_tokens")
	tighten(&l.RunUSD, b.RunUSD, path+".run_usd")
	tighten(&l.TreeTokens, float64(b.TreeTokens), path+".tree_tokens")
	tighten(&l.TreeUSD, b.TreeUSD, path+".tree_usd")
	tighten(&l.DayTokens, float64(b.DayTokens), path+".day_tokens")
	tighten(&l.DayUSD, b.DayUSD, path+".day_usd")
}

// ResolveLimits computes the limits of a run of agentID bound by layers,
// with the call's budget (zero = none).
func (r *Runtime) ResolveLimits(agentID string, layers []policy.Layer, call config.Budget) Limits {
	var l Limits
	l.add(r.cfg.Agents.Defaults.Budget, "agents.defaults.budget")
	for i, a := range r.cfg.Agents.List {
		if a.ID == agentID {
			l.add(a.Budget, fmt.Sprintf("agents.list[%d].budget", i))
		}
	}
	for _, ly := range layers {
		l.add(ly.Preset.Budget, ly.Path+".budget")
	}
	l.add(call, "the spawn's budget")
	return l
}

// dayScope names an agent's budget scope for the UTC day of ms.
func dayScope(agentID string, ms int64) string {
	return "day:" + agentID + ":" + time.UnixMilli(ms).UTC().Format("2006-01-02")
}

// budgetGuard checks a run's limits before each model call and records
// what each call spent. A run with no limit in force has a nil guard.
type budgetGuard struct {
	r      *Runtime
	limits Limits
	runID  string
	run    string // scope run:<id> ("" without a run id)
	tree   string // scope tree:<root> ("" outside a spawn tree)
	day    string
}

func (r *Runtime) newBudgetGuard(ctx context.Context, t Turn) *budgetGuard {
	l := r.ResolveLimits(t.Caller.AgentID, t.Caller.Layers, t.Budget)
	if !l.any() {
		return nil
	}
	g := &budgetGuard{r: r, limits: l, runID: t.Caller.RunID, day: dayScope(t.Caller.AgentID, r.st.NowMS())}
	if t.Caller.RunID != "" {
		g.run = "run:" + t.Caller.RunID
	}
	if root, err := r.st.TreeRoot(ctx, t.SessionKey); err == nil && root != "" {
		g.tree = "tree:" + root
		// The tree keeps the limits of the run that opened it.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := r.st.OpenBudgetScope(wctx, g.tree, int64(l.TreeTokens.Value), l.TreeUSD.Value); err != nil {
			r.log.Warn("open budget scope", "scope", g.tree, "err", err)
		}
	}
	return g
}

func (g *budgetGuard) scopes() []string {
	var out []string
	for _, s := range []string{g.run, g.tree, g.day} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// check returns why the next model call may not be made ("" = it may):
// a limit already reached, or one the next call would pass, judging the
// next call by the last one (a call sends at least the context the last
// one did), or for a run's first call by the request's size. res is the
// run's own spending so far.
func (g *budgetGuard) check(ctx context.Context, res Result, lastTokens int64, lastUSD float64) string {
	if g == nil {
		return ""
	}
	runTok, runUSD := float64(res.TokensIn+res.TokensOut), res.CostUSD
	if note := over("run", g.limits.RunTokens, g.limits.RunUSD, runTok, runUSD, lastTokens, lastUSD); note != "" {
		return note
	}
	if g.tree == "" && g.limits.DayTokens.Value == 0 && g.limits.DayUSD.Value == 0 {
		return ""
	}
	use, err := g.r.st.BudgetUsages(ctx, g.tree, g.day)
	if err != nil {
		return "budget: could not read the recorded spending (" + err.Error() + "); stopped rather than spend unchecked"
	}
	if g.tree != "" {
		u := use[g.tree]
		tt, tu := g.limits.TreeTokens, g.limits.TreeUSD
		tighten(&tt, float64(u.LimitTokens), "the tree's budget (set by its first run)")
		tighten(&tu, u.LimitUSD, "the tree's budget (set by its first run)")
		if note := over("spawn tree", tt, tu, float64(u.Tokens), u.USD, lastTokens, lastUSD); note != "" {
			return note
		}
	}
	u := use[g.day]
	return over("agent-day", g.limits.DayTokens, g.limits.DayUSD, float64(u.Tokens), u.USD, lastTokens, lastUSD)
}

func over(what string, tok, usd Limit, spentTok, spentUSD float64, nextTok int64, nextUSD float64) string {
	if tok.Value > 0 && spentTok+float64(nextTok) > tok.Value || tok.Value > 0 && spentTok >= tok.Value {
		return fmt.Sprintf("budget: the %s token limit %d (%s) would be exceeded: %d spent, the next model call needs about %d more; raise %s or give the task a larger budget",
			what, int64(tok.Value), tok.Key, int64(spentTok), nextTok, tok.Key)
	}
	if usd.Value > 0 && spentUSD+nextUSD > usd.Value || usd.Value > 0 && spentUSD >= usd.Value {
		return fmt.Sprintf("budget: the %s USD limit $%.4f (%s) would be exceeded: $%.4f spent, the next model call costs about $%.4f; raise %s or give the task a larger budget",
			what, usd.Value, usd.Key, spentUSD, nextUSD, usd.Key)
	}
	return ""
}

// record adds one model call's spending to the run's scopes.
func (g *budgetGuard) record(ctx context.Context, tokens int64, usd float64) {
	if g == nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := g.r.st.AddBudgetUsage(wctx, g.scopes(), tokens, usd); err != nil {
		g.r.log.Warn("record budget usage", "run", g.runID, "err", err)
	}
}

// BudgetLine is one limit in force for a run, what was spent against it
// and what is left.
type BudgetLine struct {
	Scope     string  `json:"scope" jsonschema:"run, tree or day"`
	Unit      string  `json:"unit" jsonschema:"tokens or usd"`
	Limit     float64 `json:"limit"`
	Spent     float64 `json:"spent"`
	Left      float64 `json:"left"`
	ConfigKey string  `json:"configKey"`
}

// RunBudget lists the limits in force for run with what was spent and
// what is left (nil when none applies). Spending comes from the recorded
// usage: the ledger while it runs, the run's own totals once it ended.
func (m *Manager) RunBudget(ctx context.Context, run *store.Run) []BudgetLine {
	var opts runOptions
	if json.Unmarshal(run.Options, &opts) != nil {
		return nil
	}
	layers := opts.Caller.Layers
	if gate := m.currentGate(); gate != nil { // the presets in force now, as the run uses them
		if fresh, err := gate.Refresh(layers); err == nil {
			layers = fresh
		}
	}
	l := m.rt.ResolveLimits(run.AgentID, layers, opts.Budget)
	if !l.any() {
		return nil
	}
	tree, _ := m.st.TreeRoot(ctx, run.ChildKey)
	if tree != "" {
		tree = "tree:" + tree
	}
	day := dayScope(run.AgentID, run.CreatedAt)
	use, _ := m.st.BudgetUsages(ctx, "run:"+run.ID, tree, day)
	runTok, runUSD := float64(run.TokensIn+run.TokensOut), run.CostUSD
	if u, ok := use["run:"+run.ID]; ok && !store.Terminal(run.State) {
		runTok, runUSD = float64(u.Tokens), u.USD
	}
	var out []BudgetLine
	line := func(scope, unit string, lim Limit, spent float64) {
		if lim.Value > 0 {
			out = append(out, BudgetLine{Scope: scope, Unit: unit, Limit: lim.Value, Spent: spent, Left: max(0, lim.Value-spent), ConfigKey: lim.Key})
		}
	}
	line("run", "tokens", l.RunTokens, runTok)
	line("run", "usd", l.RunUSD, runUSD)
	if tree != "" {
		u := use[tree]
		tt, tu := l.TreeTokens, l.TreeUSD
		tighten(&tt, float64(u.LimitTokens), "the tree's budget (set by its first run)")
		tighten(&tu, u.LimitUSD, "the tree's budget (set by its first run)")
		line("tree", "tokens", tt, float64(u.Tokens))
		line("tree", "usd", tu, u.USD)
	}
	u := use[day]
	line("day", "tokens", l.DayTokens, float64(u.Tokens))
	line("day", "usd", l.DayUSD, u.USD)
	return out
}

// estimateTokens is a rough input size of a request (4 characters a
// token), the budget's guess for a run's first model call.
func estimateTokens(req provider.Request) int64 {
	n := len(req.System)
	for _, m := range req.Messages {
		n += len(m.Text)
		for _, c := range m.ToolCalls {
			n += len(c.Name) + len(c.Args)
		}
		for _, r := range m.ToolResults {
			n += len(r.Content)
		}
	}
	for _, s := range req.Tools {
		n += len(s.Name) + len(s.Description) + len(s.Schema)
	}
	return int64(n / 4)
}
