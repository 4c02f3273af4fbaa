package tools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// SendIn is the input of sessions_send.
type SendIn struct {
	Key            string `json:"key,omitempty" jsonschema:"target session key; or use label"`
	Label          string `json:"label,omitempty" jsonschema:"target by exact label"`
	AgentID        string `json:"agentId,omitempty" jsonschema:"with label: the target session's agent"`
	Message        string `json:"message" jsonschema:"the message"`
	WaitForReply   *bool  `json:"wait_for_reply,omitempty" jsonschema:"wait for the reply" schema:"default=true"`
	TimeoutSeconds *int   `json:"timeoutSeconds,omitempty" jsonschema:"0 = fire and forget" schema:"default=30,min=0,max=300"`
	Context        string `json:"context,omitempty" jsonschema:"wraps the message as [From: <context>]"`
	Role           string `json:"role,omitempty" jsonschema:"system needs sessions.can_send_system" schema:"enum=user|system,default=user"`
}

// Targets names the written session and the role, for the gate.
func (in SendIn) Targets() policy.Targets {
	t := policy.Targets{Role: in.Role}
	if in.Key != "" {
		t.Write = []string{in.Key}
	}
	return t
}

// ApprovalSummary is the message, for the approval prompt.
func (in SendIn) ApprovalSummary() string { return firstN(in.Message, 300) }

// Failed marks a send whose turn failed as an error result.
func (o SendOut) Failed() bool { return o.Status == "error" }

// SendOut is the output of sessions_send.
type SendOut struct {
	Status   string   `json:"status" jsonschema:"ok (reply received), timeout (the turn goes on; its reply will be announced), accepted (fire and forget), delivered (the target is an MCP client's session: no agent runs), error"`
	RunID    string   `json:"runId,omitempty"`
	Key      string   `json:"key"`
	Reply    string   `json:"reply,omitempty"`
	Created  bool     `json:"created,omitempty" jsonschema:"the target session did not exist and was created"`
	Queued   bool     `json:"queued,omitempty" jsonschema:"the target was busy with another turn; this one runs after it"`
	Note     string   `json:"note,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// clientSession reports whether key is an MCP client's session: agent
// main sessions (agent:<id>:main) are driven by the client connected as
// that agent, not by a model of ours, so a send delivers to them.
// The stored kind decides when the session exists: a principal's own
// session agent:<id>:<preset> is stored as main.
func clientSession(key string, sess *store.Session) bool {
	if sess != nil {
		return sess.Kind == store.KindMain
	}
	return store.KindOf(key) == store.KindMain
}

func resolveSendTarget(ctx context.Context, call *Call, in SendIn) (string, error) {
	if in.Key != "" {
		return policy.ResolveKey(call.Caller, in.Key), nil
	}
	if in.Label == "" {
		return "", errors.New("key or label is required: the session to send to")
	}
	var found []string
	err := call.Env.Store.ListSessions(ctx, store.ListFilter{Text: in.Label, AgentID: in.AgentID}, func(s *store.Session) bool {
		if s.Label == in.Label && call.Env.Policy.Access(ctx, call.Caller, s.Key).Allowed() {
			found = append(found, s.Key)
		}
		return len(found) < 5
	})
	if err != nil {
		return "", err
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no session you can see has label %q%s", in.Label, ifAgent(in.AgentID))
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("label %q matches %d sessions (%s): give agentId or the key", in.Label, len(found), strings.Join(found, ", "))
	}
}

func ifAgent(a string) string {
	if a == "" {
		return ""
	}
	return " under agent " + a
}

func sessionsSend(ctx context.Context, call *Call, in SendIn) (SendOut, string, error) {
	if strings.TrimSpace(in.Message) == "" {
		return SendOut{}, "", errors.New("message is empty")
	}
	key, err := resolveSendTarget(ctx, call, in)
	if err != nil {
		return SendOut{}, "", err
	}
	if in.Key == "" { // resolved by label: the gate has not seen the target yet
		if d := call.Env.Policy.Decide(ctx, call.Caller, "sessions_send", "", policy.Targets{Write: []string{key}, Role: in.Role}); !d.Allowed() {
			return SendOut{}, "", &policy.Denied{Decision: d}
		}
	}
	if key == call.Caller.Key {
		return SendOut{}, "", errors.New("a session cannot send to itself")
	}
	if err := policy.ValidKey(key); err != nil {
		return SendOut{}, "", fmt.Errorf("key: %v", err)
	}
	text := in.Message
	if in.Context != "" {
		text = "[From: " + in.Context + "]\n\n" + text
	}
	role := in.Role
	if role == "" {
		role = store.RoleUser
	}
	out := SendOut{Key: key}
	existing, err := call.Env.Store.GetSession(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		if store.AgentOf(key) == "" {
			return SendOut{}, "", fmt.Errorf("session %s does not exist, and only keys of the form agent:<agentId>:<name> can be created by sending", key)
		}
		out.Created = true
	} else if err != nil {
		return SendOut{}, "", err
	}
	if err := call.Approve(ctx, in.ApprovalSummary()); err != nil {
		return SendOut{}, "", err
	}
	if clientSession(key, existing) {
		// No agent of ours runs here: deliver to the transcript (and notify
		// the client if it is connected to this process).
		if out.Created {
			if _, err := call.Env.Store.EnsureSession(ctx, store.Session{Key: key, Status: "idle"}); err != nil {
				return SendOut{}, "", err
			}
		}
		if _, err := call.Env.Store.AppendMessage(ctx, store.Message{SessionKey: key, Role: role, Trust: store.TrustInterSession,
			Content: store.Content{Text: "[From: " + call.Caller.Key + "]\n\n" + text}}); err != nil {
			return SendOut{}, "", err
		}
		if call.Env.Delivered != nil {
			call.Env.Delivered(key)
		}
		out.Status = "delivered"
		out.Note = key + " is an MCP client's session: the message is in its transcript (and the client was notified if it is connected here); no agent of ours answers it."
		return out, out.Note, nil
	}
	runs, err := runsOf(call)
	if err != nil {
		return SendOut{}, "", err
	}
	wait := in.WaitForReply == nil || *in.WaitForReply
	timeout := 30
	if in.TimeoutSeconds != nil {
		timeout = *in.TimeoutSeconds
	}
	if timeout == 0 {
		wait = false
	}
	// Ping-pong (max_ping_pong_turns) follows a send that did not wait: a
	// reply waited for is already the sender's answer.
	pingPong := 0
	if !wait && !call.Caller.Client {
		pingPong = call.Env.Config.Tools.Sessions.MaxPingPongTurns
	}
	tk, err := runs.SubmitTurn(ctx, call.Env.Policy, spruntime.TurnRequest{Kind: spruntime.KindSend, SessionKey: key,
		RequesterKey: call.Caller.Key, Message: text, Role: role, Label: "message from " + call.Caller.Key, PingPong: pingPong,
		Initiator: call.Caller})
	if err != nil {
		return SendOut{}, "", err
	}
	out.RunID, out.Warnings = tk.RunID, tk.Warnings
	if st := runStateOf(ctx, call, tk.RunID); st == store.RunQueued {
		out.Queued = busySession(ctx, call, key, tk.RunID)
	}
	if !wait {
		out.Status = "accepted"
		out.Note = "The turn runs in the background; its reply will be announced to you."
		return out, fmt.Sprintf("Sent to %s (run %s). %s", key, tk.RunID, out.Note), nil
	}
	run, err := runs.Wait(ctx, tk.RunID, time.Duration(timeout)*time.Second)
	if err != nil {
		return SendOut{}, "", err
	}
	if !store.Terminal(run.State) {
		out.Status = "timeout"
		out.Note = fmt.Sprintf("No reply within %d s; the turn goes on and its reply will be announced to you.", timeout)
		return out, fmt.Sprintf("Sent to %s (run %s). %s", key, tk.RunID, out.Note), nil
	}
	// The reply is returned here, so its announce is not delivered again.
	_ = call.Env.Store.MarkAnnounceDelivered(context.WithoutCancel(ctx), run.ID)
	if run.State != store.RunOK {
		out.Status = "error"
		out.Note = fmt.Sprintf("the turn ended %s: %s", run.State, run.Note)
		return out, "Sent to " + key + ", but " + out.Note, nil
	}
	out.Status, out.Reply = "ok", run.ResultText
	return out, fmt.Sprintf("Reply from %s:\n%s", key, Fence("session://"+key, run.ResultText)), nil
}

func runStateOf(ctx context.Context, call *Call, id string) string {
	r, err := call.Env.Store.GetRun(ctx, id)
	if err != nil {
		return ""
	}
	return r.State
}

// busySession reports whether another turn of the session runs or waits
// ahead of run id.
func busySession(ctx context.Context, call *Call, key, id string) bool {
	runs, err := call.Env.Store.ListRuns(ctx, store.RunFilter{States: []string{store.RunRunning, store.RunQueued}, Limit: 100})
	if err != nil {
		return false
	}
	for _, r := range runs {
		if r.ChildKey == key && r.ID != id && (r.State == store.RunRunning || r.ID < id) {
			return true
		}
	}
	return false
}

// SendTool is sessions_send (action class mutate-session).
func SendTool() *Tool {
	return Define(Meta{Name: "sessions_send", Title: "Send to a session", Class: policy.ClassMutate, DeferApproval: true,
		Annotations: Annotations{ReadOnly: false, Destructive: false, Idempotent: false, OpenWorld: true},
		Description: "Send a message to another session and run a turn of its agent (an agent:<id>:<name> session is created if missing). Waits timeoutSeconds for the reply; on expiry the turn goes on and its reply is announced later. A busy session queues the message. To an MCP client's main session it is only delivered."},
		sessionsSend)
}
