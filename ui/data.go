package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
	"github.com/sessionplane/sessionplane/tools"
)

// Limits of what one view holds.
const (
	sessionsLimit   = 200
	treeRunsLimit   = 500
	transcriptLimit = 300
	textCap         = 20000
	stepCap         = 160
	statsDays       = 30
)

// errForbidden is a refusal the viewer may read: it names the rule and the
// config key, never a hidden session.
type errForbidden struct{ msg string }

func (e *errForbidden) Error() string { return e.msg }

// gate caches the access decisions of one view for one viewer: every key
// shown is checked once, and an evaluation error denies the whole view.
type gate struct {
	u      *UI
	ctx    context.Context
	caller policy.Caller
	seen   map[string]bool
	err    error
}

func (u *UI) gate(ctx context.Context, c policy.Caller) *gate {
	return &gate{u: u, ctx: ctx, caller: c, seen: map[string]bool{}}
}

// can reports whether the viewer may read key.
func (g *gate) can(key string) bool {
	if key == "" {
		return false
	}
	if ok, done := g.seen[key]; done {
		return ok
	}
	d := g.u.opts.Policy.Access(g.ctx, g.caller, key)
	if !d.Allowed() && d.Rule == "policy.error" && g.err == nil {
		g.err = fmt.Errorf("policy: %s", d.Message)
	}
	g.seen[key] = d.Allowed()
	return d.Allowed()
}

// keyLike finds session keys in text (agent:<id>:<rest>, cron:<id>), and
// the start of one that a snippet cut short.
var keyLike = regexp.MustCompile(`\b(?:agent|cron):[!-~]+`)

// HiddenKey replaces, in text shown to a viewer, the key of a session the
// viewer may not read.
const HiddenKey = "[hidden session]"

// redact replaces the keys of sessions the viewer may not read in text
// (an announce or a tool result of a visible session can name one).
func (g *gate) redact(text string) string {
	if !strings.Contains(text, "agent:") && !strings.Contains(text, "cron:") {
		return text
	}
	return keyLike.ReplaceAllStringFunc(text, func(m string) string {
		// Quotes, brackets and sentence punctuation end a key in prose.
		end := strings.IndexAny(m, "\"'`<>()[]{},;")
		tail := ""
		if end >= 0 {
			m, tail = m[:end], m[end:]
		}
		for strings.HasSuffix(m, ".") || strings.HasSuffix(m, ":") {
			tail = m[len(m)-1:] + tail
			m = m[:len(m)-1]
		}
		if g.can(m) {
			return m + tail
		}
		return HiddenKey + tail
	})
}

// tool checks that the viewer may use a read tool: the dashboard shows
// what the tool would, so a preset without it shows nothing of that kind.
func (u *UI) tool(c policy.Caller, name string) error {
	if d := u.opts.Policy.ToolDecision(c, name, policy.ClassRead); !d.Allowed() {
		return &errForbidden{msg: fmt.Sprintf("this view needs %s, which your principal may not use: %s", name, d.Message)}
	}
	return nil
}

// Tokens is a token count triple.
type Tokens struct {
	In    int64 `json:"in"`
	Out   int64 `json:"out"`
	Total int64 `json:"total"`
}

// Session is one session as the dashboard shows it.
type Session struct {
	Key       string  `json:"key"`
	Kind      string  `json:"kind"`
	AgentID   string  `json:"agentId"`
	Label     string  `json:"label"`
	Status    string  `json:"status"`
	ParentKey string  `json:"parentKey,omitempty"` // only when the viewer may read the parent
	Model     string  `json:"model"`
	Depth     int     `json:"depth"`
	Messages  int     `json:"messageCount"`
	Tokens    Tokens  `json:"tokens"`
	CostUSD   float64 `json:"costUsd"`
	CreatedAt int64   `json:"createdAt"`
	UpdatedAt int64   `json:"updatedAt"`
	Archived  bool    `json:"archived,omitempty"`
}

func (g *gate) session(s *store.Session) Session {
	out := Session{Key: s.Key, Kind: s.Kind, AgentID: s.AgentID, Label: s.Label, Status: s.Status, Model: s.Model, Depth: s.Depth,
		Messages: s.MessageCount, Tokens: Tokens{s.TokensIn, s.TokensOut, s.TokensIn + s.TokensOut}, CostUSD: s.CostUSD,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Archived: s.ArchivedAt != 0}
	if g.can(s.ParentKey) {
		out.ParentKey = s.ParentKey
	}
	return out
}

// ---- sessions ----

// SessionsQuery filters the sessions view.
type SessionsQuery struct {
	Text     string `json:"q,omitempty"`
	Kind     string `json:"kind,omitempty"`
	Status   string `json:"status,omitempty"`
	Archived bool   `json:"archived,omitempty"`
}

// SessionsView is the sessions list.
type SessionsView struct {
	Sessions []Session `json:"sessions"`
	HasMore  bool      `json:"hasMore"`
	Now      int64     `json:"now"`
}

func (u *UI) sessionsView(ctx context.Context, c policy.Caller, q SessionsQuery) (*SessionsView, error) {
	if err := u.tool(c, "sessions_list"); err != nil {
		return nil, err
	}
	g := u.gate(ctx, c)
	f := store.ListFilter{Text: q.Text, Status: q.Status, IncludeArchived: q.Archived}
	if q.Kind != "" {
		f.Kinds = []string{q.Kind}
	}
	out := &SessionsView{Sessions: []Session{}}
	err := u.opts.Store.ListSessions(ctx, f, func(s *store.Session) bool {
		if !g.can(s.Key) {
			return g.err == nil
		}
		if len(out.Sessions) == sessionsLimit {
			out.HasMore = true
			return false
		}
		out.Sessions = append(out.Sessions, g.session(s))
		return true
	})
	if g.err != nil {
		return nil, g.err
	}
	return out, err
}

// ---- search ----

// SearchHit is one search result.
type SearchHit struct {
	Key     string  `json:"key"`
	Label   string  `json:"label"`
	AgentID string  `json:"agentId"`
	Snippet string  `json:"snippet"`
	Role    string  `json:"role"`
	Seq     int64   `json:"seq"`
	Score   float64 `json:"score"`
}

// SearchView is the answer of a search.
type SearchView struct {
	Query string      `json:"query"`
	Hits  []SearchHit `json:"hits"`
}

// search runs the sessions_search tool as the viewer (its own session
// included) and keeps the hits, never the count of hidden ones.
func (u *UI) search(ctx context.Context, c policy.Caller, query string) (*SearchView, error) {
	if strings.TrimSpace(query) == "" {
		return &SearchView{Query: query, Hits: []SearchHit{}}, nil
	}
	args, _ := json.Marshal(map[string]any{"query": query, "limit": 20, "exclude_current": false})
	res := u.reg.Call(ctx, c, nil, "sessions_search", args, nil)
	if res.IsError {
		switch s := res.Structured.(type) {
		case tools.Refusal:
			return nil, &errForbidden{msg: s.Message}
		case tools.ErrorOut:
			return nil, errors.New(s.Message)
		}
		return nil, errors.New(res.Text)
	}
	out, ok := res.Structured.(tools.SearchOut)
	if !ok {
		return nil, fmt.Errorf("sessions_search returned %T", res.Structured)
	}
	view := &SearchView{Query: query, Hits: []SearchHit{}}
	g := u.gate(ctx, c)
	for _, h := range out.Hits {
		view.Hits = append(view.Hits, SearchHit{Key: h.Key, Label: h.Label, AgentID: h.AgentID, Snippet: g.redact(h.Snippet), Role: h.Role, Seq: h.Seq, Score: h.Score})
	}
	if g.err != nil {
		return nil, g.err
	}
	return view, nil
}

// ---- run tree ----

// RunInfo is one run as the dashboard shows it.
type RunInfo struct {
	ID        string  `json:"id"`
	Kind      string  `json:"kind"`
	State     string  `json:"state"`
	Model     string  `json:"model"`
	Label     string  `json:"label,omitempty"`
	Requester string  `json:"requesterKey,omitempty"` // only when the viewer may read it
	ChildKey  string  `json:"childKey"`
	Note      string  `json:"note,omitempty"`
	Tokens    Tokens  `json:"tokens"`
	CostUSD   float64 `json:"costUsd"`
	CreatedAt int64   `json:"createdAt"`
	StartedAt int64   `json:"startedAt,omitempty"`
	EndedAt   int64   `json:"endedAt,omitempty"`
}

func (g *gate) run(r *store.Run) RunInfo {
	out := RunInfo{ID: r.ID, Kind: r.Kind, State: r.State, Model: r.Model, Label: r.Label, ChildKey: r.ChildKey, Note: g.redact(r.Note),
		Tokens: Tokens{r.TokensIn, r.TokensOut, r.TokensIn + r.TokensOut}, CostUSD: r.CostUSD,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, EndedAt: r.EndedAt}
	if g.can(r.RequesterKey) {
		out.Requester = r.RequesterKey
	}
	return out
}

// Step is the latest thing a session did.
type Step struct {
	Kind string `json:"kind"` // model | tool_call | tool_result | message | announce
	Text string `json:"text"`
	At   int64  `json:"at"`
}

// Node is one session of the run tree with its latest run.
type Node struct {
	Session
	Run      *RunInfo `json:"run,omitempty"`
	Runs     int      `json:"runs"`
	Step     *Step    `json:"step,omitempty"`
	Children []*Node  `json:"children"`
}

// TreeView is the run tree: requesters, their children, grandchildren…
type TreeView struct {
	Roots []*Node `json:"roots"`
	Now   int64   `json:"now"`
}

func (u *UI) treeView(ctx context.Context, c policy.Caller) (*TreeView, error) {
	if err := u.tool(c, "sessions_list"); err != nil {
		return nil, err
	}
	g := u.gate(ctx, c)
	runs, err := u.opts.Store.ListRuns(ctx, store.RunFilter{Limit: treeRunsLimit})
	if err != nil {
		return nil, err
	}
	nodes := map[string]*Node{}
	var order []string // first appearance, newest run first
	requesterOf := map[string]string{}
	add := func(key string) *Node {
		if n, ok := nodes[key]; ok {
			return n
		}
		s, err := u.opts.Store.GetSession(ctx, key)
		if err != nil {
			return nil // a run whose session is gone
		}
		n := &Node{Session: g.session(s), Children: []*Node{}}
		nodes[key] = n
		order = append(order, key)
		return n
	}
	for _, r := range runs {
		if !g.can(r.ChildKey) {
			continue
		}
		n := add(r.ChildKey)
		if n == nil {
			continue
		}
		n.Runs++
		if n.Run == nil { // runs are newest first: the first is the latest
			ri := g.run(r)
			n.Run = &ri
		}
		// The requester of the oldest run (seen last) places the node.
		if r.RequesterKey != r.ChildKey && g.can(r.RequesterKey) {
			requesterOf[r.ChildKey] = r.RequesterKey
			add(r.RequesterKey)
		}
	}
	if g.err != nil {
		return nil, g.err
	}
	parentOf := func(n *Node) string {
		if n.ParentKey != "" && nodes[n.ParentKey] != nil {
			return n.ParentKey // ParentKey is set only when visible
		}
		return requesterOf[n.Key]
	}
	placed := map[string]bool{}
	var place func(n *Node)
	place = func(n *Node) {
		placed[n.Key] = true
		for _, k := range order {
			ch := nodes[k]
			if !placed[k] && parentOf(ch) == n.Key {
				n.Children = append(n.Children, ch)
				place(ch)
			}
		}
	}
	view := &TreeView{Roots: []*Node{}}
	for _, k := range order {
		if n := nodes[k]; parentOf(n) == "" {
			view.Roots = append(view.Roots, n)
			place(n)
		}
	}
	for _, k := range order { // what is left is in a cycle of sends: its own root
		if !placed[k] {
			view.Roots = append(view.Roots, nodes[k])
			place(nodes[k])
		}
	}
	for _, n := range nodes {
		m, ok, err := u.opts.Store.LastMessage(ctx, n.Key)
		if err != nil {
			return nil, err
		}
		if ok {
			n.Step = step(m)
			n.Step.Text, _ = capText(g.redact(n.Step.Text), stepCap)
		}
	}
	return view, nil
}

// step summarises a message as a run's latest step (its text is neither
// redacted nor cut yet).
func step(m store.Message) *Step {
	s := &Step{At: m.CreatedAt}
	switch {
	case len(m.Content.ToolCalls) > 0:
		var names []string
		for _, tc := range m.Content.ToolCalls {
			names = append(names, tc.Name)
		}
		s.Kind, s.Text = "tool_call", "calls "+strings.Join(names, ", ")
	case len(m.Content.ToolResults) > 0:
		var names []string
		for _, tr := range m.Content.ToolResults {
			names = append(names, tr.Name)
		}
		s.Kind, s.Text = "tool_result", "result of "+strings.Join(names, ", ")
	case isAnnounce(m):
		s.Kind, s.Text = "announce", firstLine(m.Content.Text)
	case m.Role == store.RoleAssistant:
		s.Kind, s.Text = "model", m.Content.Text
	default:
		s.Kind, s.Text = "message", m.Role+": "+m.Content.Text
	}
	s.Text = strings.Join(strings.Fields(s.Text), " ")
	return s
}

func isAnnounce(m store.Message) bool {
	return m.Trust == store.TrustInterSession && strings.HasPrefix(m.Content.Text, "[announce]")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func capText(s string, n int) (string, bool) {
	if utf8.RuneCountInString(s) <= n {
		return s, false
	}
	r := []rune(s)
	return string(r[:n]) + "…", true
}

// ---- transcript ----

var announceKey = regexp.MustCompile(`sessionKey (\S+)`)

// errNotVisible is the one answer for a session that does not exist and
// one the viewer may not read: the two are not told apart.
var errNotVisible = errors.New("no such session, or it is not visible to you")

// stamper is a view that carries the server's clock (ms), which the page
// uses to show the runtime of running runs. It is set when the view is
// sent, after the comparison that decides whether to send it.
type stamper interface{ stamp(now int64) }

func (v *SessionsView) stamp(now int64) { v.Now = now }

func (v *TreeView) stamp(now int64) { v.Now = now }
