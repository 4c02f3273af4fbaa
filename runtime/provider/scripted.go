package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxRecordedRequests is how many recent Requests a Scripted provider keeps.
const MaxRecordedRequests = 100

// Scripted replays a Script (see Script for the format and the selection
// rules). It is labelled as what it is: canned answers for tests and demos,
// no model behind them. It is safe for concurrent use; answers depend only
// on the request, and the one piece of state is the record of requests.
type Scripted struct {
	name   string
	script *Script
	sleep  func(context.Context, time.Duration) error

	mu       sync.Mutex
	requests []Request // oldest first, at most MaxRecordedRequests
}

// NewScripted returns a scripted provider named name replaying s. opts may
// be nil; only Options.Sleep is used (for delay_ms).
func NewScripted(name string, s *Script, opts *Options) *Scripted {
	o := opts.withDefaults()
	return &Scripted{name: name, script: s, sleep: o.Sleep}
}

// Name returns the configured instance name.
func (p *Scripted) Name() string { return p.name }

// Requests returns copies of the last MaxRecordedRequests requests received,
// oldest first, so tests can assert what the agent loop sent (tools offered,
// tool_choice, messages).
func (p *Scripted) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Request, len(p.requests))
	for i, r := range p.requests {
		out[i] = cloneRequest(r)
	}
	return out
}

// Complete replays the turn the request selects.
func (p *Scripted) Complete(ctx context.Context, req Request) (*Response, error) {
	p.record(req)
	fail := func(format string, args ...any) *Error {
		return &Error{Provider: p.name, Model: req.Model, Message: fmt.Sprintf(format, args...)}
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Provider: p.name, Model: req.Model, Message: "request canceled: " + err.Error(), Err: err}
	}
	task := TaskText(firstUserText(req.Messages))
	conv := p.pick(task)
	if conv == nil {
		return nil, fail("scripted: no conversation matches the first user message %q and the script has no fallback (a conversation without match)", excerpt([]byte(task)))
	}
	idx := 0
	for _, m := range req.Messages {
		if m.Role == RoleAssistant {
			idx++
		}
	}
	if idx >= len(conv.Turns) {
		last := conv.Turns[len(conv.Turns)-1]
		if len(last.ToolCalls) > 0 {
			return nil, fail("scripted: script exhausted: conversation %s has %d turns and the request already holds %d assistant messages (the last turn calls tools, so it is not repeated)", convLabel(conv), len(conv.Turns), idx)
		}
		idx = len(conv.Turns) - 1
	}
	turn := conv.Turns[idx]
	if turn.DelayMS > 0 {
		if err := p.sleep(ctx, time.Duration(turn.DelayMS)*time.Millisecond); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, &Error{Provider: p.name, Model: req.Model, Message: "request canceled: " + err.Error(), Err: err}
		}
	}
	if e := turn.Error; e != nil {
		return nil, &Error{Provider: p.name, Model: req.Model, Status: e.Status, Message: e.Message, Retryable: retryableStatus(e.Status)}
	}
	lastResult := lastToolResult(req.Messages)
	resp := &Response{
		Text:       expand(turn.Text, task, lastResult, false),
		Usage:      turn.Usage,
		StopReason: turn.StopReason,
		Model:      p.script.Model,
	}
	if resp.Model == "" {
		resp.Model = req.Model
	}
	if resp.Model == "" {
		resp.Model = "scripted"
	}
	for i, c := range turn.ToolCalls {
		args := json.RawMessage(expand(string(c.Args), task, lastResult, true))
		resp.ToolCalls = append(resp.ToolCalls, ToolCall{ID: fmt.Sprintf("call_%d_%d", idx, i), Name: c.Name, Args: args})
	}
	if resp.StopReason == "" {
		resp.StopReason = "end_turn"
		if len(resp.ToolCalls) > 0 {
			resp.StopReason = "tool_use"
		}
	}
	return resp, nil
}

// pick returns the first conversation whose match occurs in task, else the
// fallback, else nil.
func (p *Scripted) pick(task string) *Conversation {
	var fallback *Conversation
	for i := range p.script.Conversations {
		c := &p.script.Conversations[i]
		if c.Match == "" {
			if fallback == nil {
				fallback = c
			}
			continue
		}
		if strings.Contains(task, c.Match) {
			return c
		}
	}
	return fallback
}

func (p *Scripted) record(req Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.requests) >= MaxRecordedRequests {
		p.requests = slices.Delete(p.requests, 0, len(p.requests)-MaxRecordedRequests+1)
	}
	p.requests = append(p.requests, cloneRequest(req))
}

// cloneRequest copies the slices a caller might reuse.
func cloneRequest(r Request) Request {
	r.Messages = slices.Clone(r.Messages)
	r.Tools = slices.Clone(r.Tools)
	return r
}

func convLabel(c *Conversation) string {
	switch {
	case c.Name != "":
		return fmt.Sprintf("%q", c.Name)
	case c.Match != "":
		return fmt.Sprintf("matching %q", c.Match)
	default:
		return "(fallback)"
	}
}

func firstUserText(msgs []Message) string {
	for _, m := range msgs {
		if m.Role == RoleUser {
			return m.Text
		}
	}
	return ""
}

// TaskText is what a request asks, as {{task}} and match see it: the first
// user message without the MESSAGE fence a task from another session comes
// in, and without a leading [From: ...] line. (The fence's wording is the
// runtime's; only its markers are relied on here.)
func TaskText(s string) string {
	if strings.HasPrefix(s, "<<<MESSAGE from ") {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = strings.TrimSuffix(s[i+1:], "\n<<<END MESSAGE>>>")
		}
	}
	if strings.HasPrefix(s, "[From: ") {
		if i := strings.Index(s, "]\n\n"); i >= 0 {
			s = s[i+3:]
		}
	}
	return strings.TrimSpace(s)
}

func lastToolResult(msgs []Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if rs := msgs[i].ToolResults; len(rs) > 0 {
			return rs[len(rs)-1].Content
		}
	}
	return ""
}

// expand replaces the placeholders; inJSON escapes the values for use
// inside a JSON string literal (the only place a placeholder can sit in
// valid JSON).
func expand(s, task, lastResult string, inJSON bool) string {
	if !strings.Contains(s, "{{") {
		return s
	}
	if inJSON {
		task, lastResult = jsonEscape(task), jsonEscape(lastResult)
	}
	return strings.NewReplacer(PlaceholderTask, task, PlaceholderLastToolResult, lastResult).Replace(s)
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
