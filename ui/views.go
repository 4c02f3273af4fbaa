package ui

import (
	"context"
	"errors"
	"sort"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// ToolCall is a recorded tool call.
type ToolCall struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Args string `json:"args"`
}

// ToolResult is a recorded tool result.
type ToolResult struct {
	CallID  string `json:"callId"`
	Name    string `json:"name"`
	Content string `json:"content"`
	IsError bool   `json:"isError,omitempty"`
}

// Message is one transcript entry.
type Message struct {
	Seq         int64        `json:"seq"`
	Role        string       `json:"role"`
	Trust       string       `json:"trust"`
	Text        string       `json:"text"`
	ToolCalls   []ToolCall   `json:"toolCalls,omitempty"`
	ToolResults []ToolResult `json:"toolResults,omitempty"`
	Announce    bool         `json:"announce,omitempty"`
	// ChildKey is the session an announce reports on, when the viewer may
	// read it (the page links to its transcript).
	ChildKey  string `json:"childKey,omitempty"`
	Tokens    Tokens `json:"tokens"`
	CreatedAt int64  `json:"createdAt"`
	Cut       bool   `json:"cut,omitempty"` // some text was cut to 20,000 characters
}

// TranscriptView is a session, its runs and its messages in seq order.
type TranscriptView struct {
	Session  Session   `json:"session"`
	Runs     []RunInfo `json:"runs"`     // runs in this session, newest first
	Children []RunInfo `json:"children"` // runs it requested in sessions the viewer may read
	Messages []Message `json:"messages"`
	// Earlier is true when older messages exist than the first one here.
	Earlier bool  `json:"earlier"`
	Reset   bool  `json:"reset"` // Messages replace what the page shows (else they follow it)
	Now     int64 `json:"now"`
}

func (g *gate) message(m store.Message) Message {
	out := Message{Seq: m.Seq, Role: m.Role, Trust: m.Trust, CreatedAt: m.CreatedAt,
		Tokens: Tokens{m.TokensIn, m.TokensOut, m.TokensIn + m.TokensOut}}
	var cut bool
	out.Text, cut = capText(g.redact(m.Content.Text), textCap)
	out.Cut = out.Cut || cut
	for _, tc := range m.Content.ToolCalls {
		v := ToolCall{ID: tc.ID, Name: tc.Name}
		v.Args, cut = capText(g.redact(string(tc.Args)), textCap)
		out.Cut = out.Cut || cut
		out.ToolCalls = append(out.ToolCalls, v)
	}
	for _, tr := range m.Content.ToolResults {
		v := ToolResult{CallID: tr.CallID, Name: tr.Name, IsError: tr.IsError}
		v.Content, cut = capText(g.redact(tr.Content), textCap)
		out.Cut = out.Cut || cut
		out.ToolResults = append(out.ToolResults, v)
	}
	if isAnnounce(m) {
		out.Announce = true
		if k := announceKey.FindStringSubmatch(m.Content.Text); k != nil && g.can(k[1]) {
			out.ChildKey = k[1]
		}
	}
	return out
}

// transcriptView reads key's header and its messages after seq after
// (after < 0: the newest transcriptLimit messages, Reset set).
func (u *UI) transcriptView(ctx context.Context, c policy.Caller, key string, after int64) (*TranscriptView, error) {
	if err := u.tool(c, "sessions_history"); err != nil {
		return nil, err
	}
	g := u.gate(ctx, c)
	if policy.ValidKey(key) != nil || !g.can(key) {
		if g.err != nil {
			return nil, g.err
		}
		return nil, errNotVisible
	}
	s, err := u.opts.Store.GetSession(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNotVisible
	}
	if err != nil {
		return nil, err
	}
	view := &TranscriptView{Session: g.session(s), Runs: []RunInfo{}, Children: []RunInfo{}, Messages: []Message{}}
	runs, err := u.opts.Store.ListRuns(ctx, store.RunFilter{Requesters: []string{key}, Limit: treeRunsLimit})
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if r.ChildKey != key && g.can(r.ChildKey) {
			view.Children = append(view.Children, g.run(r))
		}
	}
	own, err := u.opts.Store.RunsIn(ctx, key, treeRunsLimit)
	if err != nil {
		return nil, err
	}
	for _, r := range own {
		view.Runs = append(view.Runs, g.run(r))
	}
	var msgs []store.Message
	if after < 0 {
		var total int
		msgs, total, err = u.opts.Store.History(ctx, store.HistoryQuery{Key: key, Limit: transcriptLimit, IncludeTools: true})
		view.Reset, view.Earlier = true, total > len(msgs)
	} else {
		msgs, err = u.opts.Store.MessagesAfter(ctx, key, after)
	}
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		view.Messages = append(view.Messages, g.message(m))
	}
	if g.err != nil {
		return nil, g.err
	}
	return view, nil
}

// ---- cost and activity ----

// AgentUsage is one agent's sessions, tokens and cost.
type AgentUsage struct {
	AgentID  string  `json:"agentId"`
	Sessions int     `json:"sessions"`
	Tokens   Tokens  `json:"tokens"`
	CostUSD  float64 `json:"costUsd"`
}

// DayUsage is one day's runs, tokens and cost.
type DayUsage struct {
	Day     string  `json:"day"`
	Runs    int     `json:"runs"`
	Tokens  Tokens  `json:"tokens"`
	CostUSD float64 `json:"costUsd"`
}

// StatsView is the cost and activity page.
type StatsView struct {
	Agents      []AgentUsage   `json:"agents"`
	Days        []DayUsage     `json:"days"`
	RunsByState map[string]int `json:"runsByState"`
	Total       AgentUsage     `json:"total"`
	Now         int64          `json:"now"`
}

func (u *UI) statsView(ctx context.Context, c policy.Caller) (*StatsView, error) {
	if err := u.tool(c, "sessions_list"); err != nil {
		return nil, err
	}
	g := u.gate(ctx, c)
	now := u.opts.Now()
	view := &StatsView{Agents: []AgentUsage{}, Days: []DayUsage{}, RunsByState: map[string]int{}}
	for _, st := range []string{store.RunQueued, store.RunRunning, store.RunOK, store.RunError, store.RunTimeout, store.RunKilled, store.RunBudget, store.RunUnknown} {
		view.RunsByState[st] = 0
	}
	agents := map[string]*AgentUsage{}
	err := u.opts.Store.ListSessions(ctx, store.ListFilter{IncludeArchived: true}, func(s *store.Session) bool {
		if !g.can(s.Key) {
			return g.err == nil
		}
		a := agents[s.AgentID]
		if a == nil {
			a = &AgentUsage{AgentID: s.AgentID}
			agents[s.AgentID] = a
		}
		for _, x := range []*AgentUsage{a, &view.Total} {
			x.Sessions++
			x.Tokens.In += s.TokensIn
			x.Tokens.Out += s.TokensOut
			x.Tokens.Total += s.TokensIn + s.TokensOut
			x.CostUSD += s.CostUSD
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		view.Agents = append(view.Agents, *a)
	}
	sort.Slice(view.Agents, func(i, j int) bool {
		if view.Agents[i].CostUSD != view.Agents[j].CostUSD {
			return view.Agents[i].CostUSD > view.Agents[j].CostUSD
		}
		return view.Agents[i].AgentID < view.Agents[j].AgentID
	})
	since := now.AddDate(0, 0, -statsDays+1).Truncate(24 * 60 * 60 * 1e9).UnixMilli()
	usage, err := u.opts.Store.RunUsageByDay(ctx, since)
	if err != nil {
		return nil, err
	}
	days := map[string]*DayUsage{}
	for _, r := range usage {
		if !g.can(r.ChildKey) {
			continue
		}
		view.RunsByState[r.State] += r.Runs
		d := days[r.Day]
		if d == nil {
			d = &DayUsage{Day: r.Day}
			days[r.Day] = d
		}
		d.Runs += r.Runs
		d.Tokens.In += r.TokensIn
		d.Tokens.Out += r.TokensOut
		d.Tokens.Total += r.TokensIn + r.TokensOut
		d.CostUSD += r.CostUSD
	}
	if g.err != nil {
		return nil, g.err
	}
	for _, d := range days {
		view.Days = append(view.Days, *d)
	}
	sort.Slice(view.Days, func(i, j int) bool { return view.Days[i].Day < view.Days[j].Day })
	return view, nil
}

func (v *TranscriptView) stamp(now int64) { v.Now = now }

func (v *StatsView) stamp(now int64) { v.Now = now }
