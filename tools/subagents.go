package tools

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// SubagentsIn is the input of subagents.
type SubagentsIn struct {
	Action        string `json:"action,omitempty" jsonschema:"stop, terminate = kill" schema:"enum=list|info|log|kill|stop|terminate|send|steer,default=list"`
	Target        string `json:"target,omitempty" jsonschema:"list index, run id, session key, last, or all (kill)"`
	Message       string `json:"message,omitempty" jsonschema:"for send and steer"`
	Limit         int    `json:"limit,omitempty" jsonschema:"log: messages shown" schema:"default=20,min=1,max=200"`
	IncludeTools  bool   `json:"includeTools,omitempty" jsonschema:"log: include tool calls and results" schema:"default=false"`
	RecentMinutes int    `json:"recentMinutes,omitempty" jsonschema:"list: also runs ended in the last N minutes" schema:"default=30,min=0"`
}

// ApprovalSummary names the action, for the approval prompt.
func (in SubagentsIn) ApprovalSummary() string {
	return strings.TrimSpace(in.Action + " " + in.Target + " " + firstN(in.Message, 200))
}

// SubagentsOut is the output of subagents.
type SubagentsOut struct {
	Action  string           `json:"action"`
	Active  int              `json:"active"`
	Done    int              `json:"done"`
	Runs    []RunInfo        `json:"runs"`
	Killed  []string         `json:"killed,omitempty"`
	Reply   string           `json:"reply,omitempty"`
	Status  string           `json:"status,omitempty" jsonschema:"send/steer: ok, timeout (no reply within 30 s; it goes on) or accepted"`
	RunID   string           `json:"runId,omitempty"`
	Log     []HistoryMessage `json:"log,omitempty"`
	HasMore bool             `json:"hasMore,omitempty"`
}

// sendWait bounds subagents send.
const sendWait = 30 * time.Second

func subagentRuns(ctx context.Context, call *Call, recentMinutes int) ([]*store.Run, error) {
	if recentMinutes == 0 {
		recentMinutes = 30
	}
	runs, err := call.Env.Store.ListRuns(ctx, store.RunFilter{Requesters: []string{call.Caller.Key}, Kind: "spawn",
		EndedSince: call.Env.Store.NowMS() - int64(recentMinutes)*60_000, Limit: 500})
	if err != nil {
		return nil, err
	}
	// Oldest first, so list indexes stay stable as new runs start.
	for i, j := 0, len(runs)-1; i < j; i, j = i+1, j-1 {
		runs[i], runs[j] = runs[j], runs[i]
	}
	return runs, nil
}

// pickTarget resolves target against the caller's runs.
func pickTarget(ctx context.Context, call *Call, runs []*store.Run, target string) (*store.Run, error) {
	target = strings.TrimSpace(target)
	switch {
	case target == "":
		return nil, errors.New("target is required: a list index, a runId prefix, a session key, or last")
	case target == "last":
		if len(runs) == 0 {
			return nil, errors.New("no sub-agents to target (subagents list is empty)")
		}
		return runs[len(runs)-1], nil
	}
	if n, err := strconv.Atoi(target); err == nil {
		if n < 1 || n > len(runs) {
			return nil, fmt.Errorf("target %d is not in the list (1..%d)", n, len(runs))
		}
		return runs[n-1], nil
	}
	var found []*store.Run
	for _, r := range runs {
		if r.ChildKey == target || strings.HasPrefix(r.ID, target) {
			found = append(found, r)
		}
	}
	if len(found) == 0 {
		// Not in the recent list: any run of the caller by full id or key.
		if r, err := ownRun(ctx, call, target); err == nil {
			return r, nil
		}
		all, err := call.Env.Store.ListRuns(ctx, store.RunFilter{Requesters: []string{call.Caller.Key}, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, r := range all {
			if r.ChildKey == target {
				return r, nil
			}
		}
		return nil, fmt.Errorf("no sub-agent matches %q (subagents list shows yours)", target)
	}
	if len(found) > 1 && found[0].ChildKey != target {
		return nil, fmt.Errorf("%q matches %d runs: give more of the runId", target, len(found))
	}
	return found[len(found)-1], nil
}

func subagents(ctx context.Context, call *Call, in SubagentsIn) (SubagentsOut, string, error) {
	action := in.Action
	switch action {
	case "":
		action = "list"
	case "stop", "terminate":
		action = "kill"
	}
	runs, err := subagentRuns(ctx, call, in.RecentMinutes)
	if err != nil {
		return SubagentsOut{}, "", err
	}
	if runs, err = visibleRuns(ctx, call, runs); err != nil {
		return SubagentsOut{}, "", err
	}
	out := SubagentsOut{Action: action, Runs: []RunInfo{}}
	for _, r := range runs {
		if store.Terminal(r.State) {
			out.Done++
		} else {
			out.Active++
		}
	}
	if action == "list" || action == "info" || action == "log" {
		call.NoApproval() // reads: nothing to approve
	}
	if action == "list" {
		for _, r := range runs {
			out.Runs = append(out.Runs, runInfo(ctx, call, r, false))
		}
		return out, renderSubagentList(out, call.Env.Store.NowMS()), nil
	}
	mgr, err := runsOf(call)
	if err != nil {
		return SubagentsOut{}, "", err
	}
	if action == "kill" && in.Target == "all" {
		if err := call.Approve(ctx, "kill all sub-agents"); err != nil {
			return SubagentsOut{}, "", err
		}
		for _, r := range runs {
			if !store.Terminal(r.State) {
				k, err := mgr.Kill(ctx, r.ID, "stopped by "+call.Caller.Key, true)
				if err != nil {
					return SubagentsOut{}, "", err
				}
				out.Killed = append(out.Killed, k...)
			}
		}
		return out, fmt.Sprintf("⚙️ Stop requested for all sub-agents: %d run(s) stopped.", len(out.Killed)), nil
	}
	r, err := pickTarget(ctx, call, runs, in.Target)
	if err != nil {
		return SubagentsOut{}, "", err
	}
	// The child's session is checked like any session the caller names:
	// reading (info, log) needs access to it, and send/steer append to it
	// (can_send, like sessions_send). Kill needs access too.
	targets := policy.Targets{Read: []string{r.ChildKey}}
	if action == "send" || action == "steer" {
		targets = policy.Targets{Write: []string{r.ChildKey}}
	}
	if err := checkSessions(ctx, call, "subagents", targets); err != nil {
		return SubagentsOut{}, "", err
	}
	info := runInfo(ctx, call, r, true)
	out.Runs = append(out.Runs, info)
	out.RunID = r.ID
	switch action {
	case "info":
		return out, renderSubagentInfo(info), nil
	case "log":
		limit := in.Limit
		if limit == 0 {
			limit = 20
		}
		msgs, total, err := call.Env.Store.History(ctx, store.HistoryQuery{Key: r.ChildKey, Limit: limit, IncludeTools: in.IncludeTools})
		if err != nil {
			return SubagentsOut{}, "", err
		}
		out.Log, _ = historyMessages(msgs, in.IncludeTools)
		out.HasMore = len(msgs) < total
		return out, renderHistory(HistoryOut{Key: r.ChildKey, Messages: out.Log, TotalMessages: total, HasMore: out.HasMore}), nil
	case "kill":
		if err := call.Approve(ctx, "kill "+r.ID); err != nil {
			return SubagentsOut{}, "", err
		}
		out.Killed, err = mgr.Kill(ctx, r.ID, "stopped by "+call.Caller.Key, true)
		if err != nil {
			return SubagentsOut{}, "", err
		}
		if len(out.Killed) == 0 {
			return out, fmt.Sprintf("%s had already ended (%s).", labelOr(r.Label, firstN(r.Task, 40)), r.State), nil
		}
		return out, fmt.Sprintf("⚙️ Stop requested for %s.", labelOr(r.Label, firstN(r.Task, 40))), nil
	case "send", "steer":
		if strings.TrimSpace(in.Message) == "" {
			return SubagentsOut{}, "", fmt.Errorf("message is required for %s", action)
		}
		if err := call.Approve(ctx, in.Message); err != nil {
			return SubagentsOut{}, "", err
		}
		if action == "steer" {
			nr, err := mgr.Steer(ctx, r, call.Caller, in.Message)
			if err != nil {
				return SubagentsOut{}, "", err
			}
			out.Status, out.RunID = "accepted", nr.ID
			return out, fmt.Sprintf("Steered %s: its current turn was stopped (no announce) and it restarted as run %s with the new message.", r.ChildKey, nr.ID), nil
		}
		return subagentSend(ctx, call, out, r, in.Message)
	}
	return SubagentsOut{}, "", fmt.Errorf("unknown action %q: use list, info, log, kill, send or steer", in.Action)
}

// subagentSend puts a message into a child and waits up to 30 s for its
// reply: a running child reads it before its next model call; a finished
// child gets a new run with it.
func subagentSend(ctx context.Context, call *Call, out SubagentsOut, r *store.Run, message string) (SubagentsOut, string, error) {
	mgr := call.Env.Runs
	st := call.Env.Store
	if !store.Terminal(r.State) {
		seq, err := st.AppendMessage(ctx, store.Message{SessionKey: r.ChildKey, Role: store.RoleUser, Trust: store.TrustInterSession,
			Content: store.Content{Text: "[From: " + call.Caller.Key + "]\n\n" + message}})
		if err != nil {
			return SubagentsOut{}, "", err
		}
		wctx, cancel := context.WithTimeout(ctx, sendWait)
		defer cancel()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			woke := st.Wake(store.TopicMessages) // a reply committed by another process (PostgreSQL)
			msgs, err := st.MessagesAfter(wctx, r.ChildKey, seq)
			if err == nil {
				for _, m := range msgs {
					if m.Role == store.RoleAssistant && m.Content.Text != "" {
						out.Status, out.Reply = "ok", m.Content.Text
						return out, "Reply from " + r.ChildKey + ":\n" + Fence("session://"+r.ChildKey, m.Content.Text), nil
					}
				}
			}
			select {
			case <-wctx.Done():
				out.Status = "timeout"
				return out, fmt.Sprintf("Message delivered to %s; no reply within 30 s (it is still working; its result will be announced).", r.ChildKey), nil
			case <-woke:
			case <-tick.C:
			}
		}
	}
	nr, err := mgr.Continue(ctx, r, call.Caller, call.Caller.Key, "[From: "+call.Caller.Key+"]\n\n"+message)
	if err != nil {
		return SubagentsOut{}, "", err
	}
	out.RunID = nr.ID
	done, err := mgr.Wait(ctx, nr.ID, sendWait)
	if err != nil {
		return SubagentsOut{}, "", err
	}
	if !store.Terminal(done.State) {
		out.Status = "timeout"
		return out, fmt.Sprintf("Message sent to %s as run %s; no reply within 30 s (its result will be announced).", r.ChildKey, nr.ID), nil
	}
	out.Status, out.Reply = done.State, done.ResultText
	return out, fmt.Sprintf("Reply from %s (%s):\n%s", r.ChildKey, done.State, Fence("session://"+r.ChildKey, done.ResultText)), nil
}

func stateIcon(state string) string {
	switch state {
	case store.RunOK:
		return "✅"
	case store.RunRunning:
		return "🔄"
	case store.RunQueued:
		return "⏳"
	case store.RunKilled:
		return "⛔"
	case store.RunTimeout:
		return "⏱️"
	case store.RunUnknown:
		return "❔"
	default:
		return "❌"
	}
}

func runtimeOf(r RunInfo, now int64) string {
	start, end := r.StartedAt, r.EndedAt
	if start == 0 {
		return "0s"
	}
	if end == 0 {
		end = now
	}
	d := time.Duration(end-start) * time.Millisecond
	if d >= time.Minute {
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

func renderSubagentList(out SubagentsOut, now int64) string {
	var b strings.Builder
	b.WriteString("🧭 Subagents (current session)\n")
	fmt.Fprintf(&b, "Active: %d · Done: %d\n", out.Active, out.Done)
	ids := make([]string, len(out.Runs))
	for i, r := range out.Runs {
		ids[i] = r.TaskID
	}
	short := uniquePrefixes(ids, 8)
	for i, r := range out.Runs {
		fmt.Fprintf(&b, "%d) %s · %s · %s · run %s · %s\n", i+1, stateIcon(r.Status), firstN(labelOr(r.Label, r.Task), 40), runtimeOf(r, now), short[i], r.ChildKey)
	}
	return strings.TrimSpace(b.String())
}

// uniquePrefixes shortens each id to its shortest prefix of at least min
// characters that no other id shares: what the list shows is what target
// accepts (a runId prefix). UUIDv7 ids made in the same millisecond share
// their first 13 characters, so the length varies.
func uniquePrefixes(ids []string, min int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		n := min
		for j, other := range ids {
			if j == i || other == id {
				continue
			}
			for n < len(id) && strings.HasPrefix(other, id[:n]) {
				n++
			}
		}
		if n > len(id) {
			n = len(id)
		}
		out[i] = id[:n]
	}
	return out
}

func renderSubagentInfo(r RunInfo) string {
	var b strings.Builder
	b.WriteString("ℹ️ Subagent info\n")
	fmt.Fprintf(&b, "Status: %s %s\nLabel: %s\nTask: %s\nRun: %s\nSession: %s\nModel: %s\nRuntime: %s\nOutcome: %s\n",
		stateIcon(r.Status), r.Status, r.Label, r.Task, r.TaskID, r.ChildKey, r.Model, runtimeOf(r, time.Now().UnixMilli()), r.Status)
	if r.Note != "" {
		fmt.Fprintf(&b, "Note: %s\n", r.Note)
	}
	return strings.TrimSpace(b.String())
}

// SubagentsTool is subagents (action class spawn-subagent; approval is
// asked for the actions that change something).
func SubagentsTool() *Tool {
	return Define(Meta{Name: "subagents", Title: "Control sub-agents", Class: policy.ClassSpawn, DeferApproval: true,
		Annotations: Annotations{ReadOnly: false, Destructive: true, Idempotent: false, OpenWorld: false},
		Description: "List, inspect and control the sub-agents you spawned: list, info, log (transcript), kill (cascades to their children), send (waits up to 30 s for the reply), steer (stop the current turn and restart with a new message)."},
		subagents)
}

// checkSessions applies the gate's session checks (access, send rights) to
// sessions a handler resolved itself, with no approval step: the handler
// asks for approval when it acts.
func checkSessions(ctx context.Context, call *Call, tool string, t policy.Targets) error {
	d := call.Env.Policy.Decide(ctx, call.Caller, tool, "", t)
	if d.Effect == policy.Ask {
		return nil
	}
	return policy.Check(d)
}

// visibleRuns keeps the runs whose child session the caller may read: what
// policy hides is neither shown nor counted. An evaluation error denies.
func visibleRuns(ctx context.Context, call *Call, runs []*store.Run) ([]*store.Run, error) {
	out := runs[:0:0]
	for _, r := range runs {
		d := call.Env.Policy.Access(ctx, call.Caller, r.ChildKey)
		if d.Rule == "policy.error" {
			return nil, &policy.Denied{Decision: d}
		}
		if d.Allowed() {
			out = append(out, r)
		}
	}
	return out, nil
}
