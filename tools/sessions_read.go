package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Limits of the read tools (SPEC §3).
const (
	historyTextCap  = 4000
	historyByteCap  = 80 * 1024
	listMaxLimit    = 100
	historyMaxLimit = 200
)

// Tokens is a token count triple.
type Tokens struct {
	In    int64 `json:"in"`
	Out   int64 `json:"out"`
	Total int64 `json:"total"`
}

// SessionInfo is one session as the read tools show it.
type SessionInfo struct {
	Key              string           `json:"key"`
	SessionID        string           `json:"sessionId"`
	Kind             string           `json:"kind"`
	AgentID          string           `json:"agentId"`
	Label            string           `json:"label"`
	Status           string           `json:"status"`
	ParentKey        string           `json:"parentKey"`
	SpawnedBy        string           `json:"spawnedBy"`
	Model            string           `json:"model"`
	MessageCount     int              `json:"messageCount"`
	Tokens           Tokens           `json:"tokens"`
	EstimatedCostUSD float64          `json:"estimatedCostUsd"`
	CreatedAt        int64            `json:"createdAt"`
	UpdatedAt        int64            `json:"updatedAt"`
	ArchivedAt       int64            `json:"archivedAt,omitempty"`
	TranscriptURI    string           `json:"transcriptUri"`
	Messages         []HistoryMessage `json:"messages,omitempty"`
}

func sessionInfo(s *store.Session) SessionInfo {
	return SessionInfo{
		Key: s.Key, SessionID: s.ID, Kind: s.Kind, AgentID: s.AgentID, Label: s.Label, Status: s.Status,
		ParentKey: s.ParentKey, SpawnedBy: s.SpawnedBy, Model: s.Model, MessageCount: s.MessageCount,
		Tokens:           Tokens{In: s.TokensIn, Out: s.TokensOut, Total: s.TokensIn + s.TokensOut},
		EstimatedCostUSD: s.CostUSD, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, ArchivedAt: s.ArchivedAt,
		TranscriptURI: SessionURI(s.Key),
	}
}

// ---- sessions_list ----

// ListIn is the input of sessions_list.
type ListIn struct {
	Filter          string   `json:"filter,omitempty" jsonschema:"text in the key or label"`
	Kinds           []string `json:"kinds,omitempty" jsonschema:"only these kinds: main, subagent, cron, other"`
	Status          string   `json:"status,omitempty" jsonschema:"idle, running, done or error"`
	ActiveMinutes   int      `json:"activeMinutes,omitempty" jsonschema:"only sessions updated in the last N minutes" schema:"min=0"`
	Limit           int      `json:"limit,omitempty" jsonschema:"sessions returned" schema:"default=20,min=1,max=100"`
	MessageLimit    int      `json:"messageLimit,omitempty" jsonschema:"include each session's last N messages" schema:"default=0,min=0,max=20"`
	IncludeArchived bool     `json:"includeArchived,omitempty" jsonschema:"include archived sessions" schema:"default=false"`
}

// ListOut is the output of sessions_list.
type ListOut struct {
	Count      int           `json:"count"`
	Sessions   []SessionInfo `json:"sessions"`
	Visibility string        `json:"visibility" jsonschema:"the tools.sessions.visibility in force"`
	HasMore    bool          `json:"hasMore"`
}

var validKinds = map[string]bool{store.KindMain: true, store.KindSubagent: true, store.KindCron: true, store.KindOther: true}

func sessionsList(ctx context.Context, call *Call, in ListIn) (ListOut, string, error) {
	limit := in.Limit
	if limit == 0 {
		limit = 20
	}
	for _, k := range in.Kinds {
		if !validKinds[k] {
			return ListOut{}, "", fmt.Errorf("kinds: %q is not a session kind: use main, subagent, cron or other", k)
		}
	}
	// messageLimit shows transcripts: it needs what sessions_history needs,
	// so denying sessions_history cannot be bypassed through the list.
	if in.MessageLimit > 0 {
		if d := call.Env.Policy.ToolDecision(call.Caller, "sessions_history", policy.ClassRead); !d.Allowed() {
			d.Message = "messageLimit shows transcripts, which needs sessions_history: " + d.Message + " (or call sessions_list with messageLimit 0)"
			return ListOut{}, "", &policy.Denied{Decision: d}
		}
	}
	f := store.ListFilter{Text: in.Filter, Kinds: in.Kinds, Status: in.Status, IncludeArchived: in.IncludeArchived, Brief: true} // sessionInfo's columns
	if in.ActiveMinutes > 0 {
		f.UpdatedSince = call.Env.Store.NowMS() - int64(in.ActiveMinutes)*60_000
	}
	out := ListOut{Sessions: []SessionInfo{}, Visibility: call.Env.Config.Tools.Sessions.Visibility}
	var denyErr error
	err := call.Env.Store.ListSessions(ctx, f, func(s *store.Session) bool {
		d := call.Env.Policy.Access(ctx, call.Caller, s.Key)
		if !d.Allowed() {
			if d.Rule == "policy.error" {
				denyErr = &policy.Denied{Decision: d}
				return false
			}
			return true // hidden: neither shown nor counted (no oracle)
		}
		if len(out.Sessions) == limit {
			out.HasMore = true
			return false
		}
		out.Sessions = append(out.Sessions, sessionInfo(s))
		return true
	})
	if denyErr != nil {
		return ListOut{}, "", denyErr
	}
	if err != nil {
		return ListOut{}, "", err
	}
	if in.MessageLimit > 0 {
		for i := range out.Sessions {
			msgs, _, err := call.Env.Store.History(ctx, store.HistoryQuery{Key: out.Sessions[i].Key, Limit: in.MessageLimit})
			if err != nil {
				return ListOut{}, "", err
			}
			out.Sessions[i].Messages, _ = historyMessages(msgs, false)
		}
	}
	out.Count = len(out.Sessions)
	return out, renderList(out, call.Caller), nil
}

func renderList(out ListOut, c policy.Caller) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d session(s)", out.Count)
	if out.HasMore {
		b.WriteString(" (more exist: raise limit or narrow the filter)")
	}
	b.WriteString(":\n")
	for _, s := range out.Sessions {
		label := ""
		if s.Label != "" {
			label = fmt.Sprintf(" %q", s.Label)
		}
		fmt.Fprintf(&b, "- %s%s [%s, agent %s, %s] %d messages, tokens %s, updated %s\n", s.Key, label, s.Kind, s.AgentID, s.Status,
			s.MessageCount, humanTokens(s.Tokens.Total), msToRFC3339(s.UpdatedAt))
		for _, m := range s.Messages {
			fmt.Fprintf(&b, "    #%d %s: %s\n", m.Seq, m.Role, Fence(SessionURI(s.Key), m.Content))
		}
	}
	return strings.TrimSpace(b.String())
}

// ---- sessions_history ----

// HistoryIn is the input of sessions_history.
type HistoryIn struct {
	Key          string `json:"key,omitempty" jsonschema:"session key, main or current (default current)"`
	SessionKey   string `json:"sessionKey,omitempty" jsonschema:"alias of key"`
	SessionID    string `json:"sessionId,omitempty" jsonschema:"stable id from sessions_list"`
	Limit        int    `json:"limit,omitempty" jsonschema:"messages returned" schema:"default=20,min=1,max=200"`
	Offset       int    `json:"offset,omitempty" jsonschema:"newest messages skipped, for paging back" schema:"default=0,min=0"`
	IncludeTools bool   `json:"includeTools,omitempty" jsonschema:"include tool calls and results" schema:"default=false"`
}

// Targets names the session read, for the gate.
func (in HistoryIn) Targets() policy.Targets {
	if k := in.key(); k != "" {
		return policy.Targets{Read: []string{k}}
	}
	return policy.Targets{}
}

func (in HistoryIn) key() string {
	if in.Key != "" {
		return in.Key
	}
	return in.SessionKey
}

// HistoryMessage is one transcript entry as the read tools show it.
type HistoryMessage struct {
	Seq         int64              `json:"seq"`
	Role        string             `json:"role"`
	Content     string             `json:"content"`
	ToolCalls   []ToolCallView     `json:"toolCalls,omitempty"`
	ToolResults []store.ToolResult `json:"toolResults,omitempty"`
	Trust       string             `json:"trust"`
	CreatedAt   int64              `json:"createdAt"`
}

// ToolCallView is a recorded tool call: its arguments as JSON (or as a
// string when they were cut).
type ToolCallView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Args any    `json:"args,omitempty"`
}

// HistoryOut is the output of sessions_history.
type HistoryOut struct {
	Key              string           `json:"key"`
	Messages         []HistoryMessage `json:"messages"`
	TotalMessages    int              `json:"totalMessages"`
	HasMore          bool             `json:"hasMore"`
	Truncated        bool             `json:"truncated" jsonschema:"older messages of this page were dropped to keep the result under 80 KB"`
	ContentTruncated bool             `json:"contentTruncated" jsonschema:"some text blocks were cut to 4000 characters"`
}

// historyMessages converts and caps messages; includeTools keeps tool parts.
func historyMessages(msgs []store.Message, includeTools bool) ([]HistoryMessage, bool) {
	out := make([]HistoryMessage, 0, len(msgs))
	cut := false
	for _, m := range msgs {
		hm := HistoryMessage{Seq: m.Seq, Role: m.Role, Trust: m.Trust, CreatedAt: m.CreatedAt}
		var c bool
		hm.Content, c = capText(m.Content.Text, historyTextCap)
		cut = cut || c
		if includeTools {
			for _, tc := range m.Content.ToolCalls {
				view := ToolCallView{ID: tc.ID, Name: tc.Name}
				args, c := capText(string(tc.Args), historyTextCap)
				cut = cut || c
				if c || json.Unmarshal([]byte(args), &view.Args) != nil {
					view.Args = args // cut or not JSON: shown as a string
				}
				hm.ToolCalls = append(hm.ToolCalls, view)
			}
			for _, tr := range m.Content.ToolResults {
				tr.Content, c = capText(tr.Content, historyTextCap)
				cut = cut || c
				hm.ToolResults = append(hm.ToolResults, tr)
			}
		}
		out = append(out, hm)
	}
	return out, cut
}

// resolveSession finds a session by key (aliases resolved) or stable id.
func resolveSession(ctx context.Context, call *Call, key, id string) (*store.Session, error) {
	if key == "" && id == "" {
		return nil, errors.New("key is required (the session key, e.g. agent:main:main; sessionKey and sessionId are accepted too)")
	}
	var s *store.Session
	var err error
	if key != "" {
		if key, err = sessionKey(call, key); err != nil {
			return nil, err
		}
		s, err = call.Env.Store.GetSession(ctx, key)
	} else {
		s, err = call.Env.Store.GetSessionByID(ctx, id)
	}
	return foundSession(ctx, call, s, err, key, id)
}

// sessionKey resolves a key as the caller wrote it (relative forms) and
// checks its shape.
func sessionKey(call *Call, key string) (string, error) {
	key = policy.ResolveKey(call.Caller, key)
	if err := policy.ValidKey(key); err != nil {
		return "", fmt.Errorf("key: %v", err)
	}
	return key, nil
}

// foundSession turns the read of a session named by key (or, when key is
// "", by id) into resolveSession's answer: a not-found error that says
// where to look, or the session once the caller may see it.
func foundSession(ctx context.Context, call *Call, s *store.Session, err error, key, id string) (*store.Session, error) {
	if errors.Is(err, store.ErrNotFound) {
		what := key
		if what == "" {
			what = "id " + id
		}
		return nil, fmt.Errorf("session %s not found (sessions_list shows the sessions you can see)", what)
	}
	if err != nil {
		return nil, err
	}
	// A session found by id is checked here; one named by key was checked by the gate.
	if err := policy.Check(call.Env.Policy.Access(ctx, call.Caller, s.Key)); err != nil {
		return nil, err
	}
	return s, nil
}

func sessionsHistory(ctx context.Context, call *Call, in HistoryIn) (HistoryOut, string, error) {
	key := in.key()
	if key == "" && in.SessionID == "" {
		key = call.Caller.Key // like session_status: default to your own
	}
	s, err := resolveSession(ctx, call, key, in.SessionID)
	if err != nil {
		return HistoryOut{}, "", err
	}
	limit := in.Limit
	if limit == 0 {
		limit = 20
	}
	msgs, total, err := call.Env.Store.History(ctx, store.HistoryQuery{Key: s.Key, Limit: limit, Offset: in.Offset, IncludeTools: in.IncludeTools})
	if err != nil {
		return HistoryOut{}, "", err
	}
	out := HistoryOut{Key: s.Key, TotalMessages: total, HasMore: in.Offset+len(msgs) < total}
	out.Messages, out.ContentTruncated = historyMessages(msgs, in.IncludeTools)
	for len(out.Messages) > 0 {
		b, _ := json.Marshal(out)
		if len(b) <= historyByteCap {
			break
		}
		out.Messages = out.Messages[1:]
		out.Truncated, out.HasMore = true, true
	}
	return out, renderHistory(out), nil
}

func renderHistory(out HistoryOut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "History of %s: %d of %d message(s)", out.Key, len(out.Messages), out.TotalMessages)
	if out.HasMore {
		b.WriteString(" (older messages exist: raise offset to page back)")
	}
	if out.Truncated {
		b.WriteString(" [older messages of this page dropped to stay under 80 KB]")
	}
	if out.ContentTruncated {
		b.WriteString(" [some text cut to 4000 characters]")
	}
	b.WriteString("\n")
	var body strings.Builder
	for _, m := range out.Messages {
		fmt.Fprintf(&body, "#%d %s (%s): %s\n", m.Seq, m.Role, m.Trust, m.Content)
		for _, tc := range m.ToolCalls {
			args, _ := json.Marshal(tc.Args)
			fmt.Fprintf(&body, "    → %s(%s)\n", tc.Name, args)
		}
		for _, tr := range m.ToolResults {
			status := "ok"
			if tr.IsError {
				status = "error"
			}
			fmt.Fprintf(&body, "    ← %s [%s]: %s\n", tr.Name, status, tr.Content)
		}
	}
	if body.Len() > 0 {
		b.WriteString(Fence(SessionURI(out.Key), strings.TrimRight(body.String(), "\n")))
	}
	return b.String()
}

// ---- sessions_search ----

// SearchIn is the input of sessions_search.
type SearchIn struct {
	Query          string `json:"query" jsonschema:"words to find (every word must appear)"`
	Limit          int    `json:"limit,omitempty" jsonschema:"hits returned" schema:"default=5,min=1,max=20"`
	ExcludeCurrent *bool  `json:"exclude_current,omitempty" jsonschema:"leave out your own session" schema:"default=true"`
}

// SearchHit is one ranked search result.
type SearchHit struct {
	Key     string  `json:"key"`
	Label   string  `json:"label"`
	AgentID string  `json:"agentId"`
	Snippet string  `json:"snippet"`
	Role    string  `json:"role"`
	Seq     int64   `json:"seq"`
	Score   float64 `json:"score"`
}

// SearchOut is the output of sessions_search.
type SearchOut struct {
	Query string      `json:"query"`
	Count int         `json:"count"`
	Hits  []SearchHit `json:"hits"`
}

func sessionsSearch(ctx context.Context, call *Call, in SearchIn) (SearchOut, string, error) {
	if strings.TrimSpace(in.Query) == "" {
		return SearchOut{}, "", errors.New("query is empty: give one or more words to search for")
	}
	limit := in.Limit
	if limit == 0 {
		limit = 5
	}
	q := store.SearchQuery{Query: in.Query}
	if in.ExcludeCurrent == nil || *in.ExcludeCurrent {
		q.ExcludeKey = call.Caller.Key
	}
	out := SearchOut{Query: in.Query, Hits: []SearchHit{}}
	seen := map[string]policy.Decision{}
	var denyErr error
	err := call.Env.Store.Search(ctx, q, func(h store.Hit) bool {
		d, ok := seen[h.Key]
		if !ok {
			d = call.Env.Policy.Access(ctx, call.Caller, h.Key)
			seen[h.Key] = d
		}
		if !d.Allowed() {
			if d.Rule == "policy.error" {
				denyErr = &policy.Denied{Decision: d}
				return false
			}
			return true // hidden: neither shown nor counted (no oracle)
		}
		out.Hits = append(out.Hits, SearchHit{Key: h.Key, Label: h.Label, AgentID: h.AgentID, Snippet: h.Snippet, Role: h.Role, Seq: h.Seq, Score: h.Score})
		return len(out.Hits) < limit
	})
	if denyErr != nil {
		return SearchOut{}, "", denyErr
	}
	if err != nil {
		return SearchOut{}, "", err
	}
	out.Count = len(out.Hits)
	var b strings.Builder
	fmt.Fprintf(&b, "%d hit(s) for %q", out.Count, in.Query)
	if out.Count == 0 {
		return out, b.String() + ".", nil
	}
	b.WriteString(":\n")
	// One fence around every hit: the snippets are other sessions' text.
	var hits strings.Builder
	for i, h := range out.Hits {
		fmt.Fprintf(&hits, "%d. %s #%d %s (score %.2f): %s\n", i+1, h.Key, h.Seq, h.Role, h.Score, strings.Join(strings.Fields(h.Snippet), " "))
	}
	b.WriteString(Fence("sessions_search (snippets of the sessions named)", strings.TrimSpace(hits.String())))
	return out, b.String(), nil
}

// Info converts a stored session for display (used by session:// resources).
func Info(s *store.Session) SessionInfo { return sessionInfo(s) }

// Messages converts stored messages for display, tool parts included and
// text blocks capped at 4000 characters.
func Messages(msgs []store.Message) []HistoryMessage {
	out, _ := historyMessages(msgs, true)
	return out
}
