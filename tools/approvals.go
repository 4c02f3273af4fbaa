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

// ApprovalsIn is the input of approvals.
type ApprovalsIn struct {
	Action string `json:"action" schema:"enum=list|approve|deny"`
	ID     string `json:"id,omitempty" jsonschema:"approval id (approve, deny)"`
}

// ApprovalInfo is one pending approval.
type ApprovalInfo struct {
	ID        string `json:"id"`
	RunID     string `json:"run_id"`
	Session   string `json:"session"`
	Tool      string `json:"tool"`
	Class     string `json:"class"`
	Args      string `json:"args"`
	ExpiresAt string `json:"expires_at"`
}

// ApprovalsOut is the output of approvals.
type ApprovalsOut struct {
	Action  string         `json:"action"`
	Pending []ApprovalInfo `json:"pending,omitempty"`
	ID      string         `json:"id,omitempty"`
	State   string         `json:"state,omitempty"`
}

func approvalsRun(ctx context.Context, call *Call, in ApprovalsIn) (ApprovalsOut, string, error) {
	call.NoApproval() // a decision here is the human's own; the gate's allow/deny still applied
	runs, err := runsOf(call)
	if err != nil {
		return ApprovalsOut{}, "", err
	}
	st := call.Env.Store
	if in.Action == "list" {
		all, err := st.PendingApprovals(ctx)
		if err != nil {
			return ApprovalsOut{}, "", err
		}
		out := ApprovalsOut{Action: "list", Pending: []ApprovalInfo{}}
		var b strings.Builder
		for _, a := range all {
			r, err := ownRun(ctx, call, a.RunID)
			if err != nil || r.State != store.RunInputRequired {
				continue // not the caller's (not shown), or its run was killed
			}
			out.Pending = append(out.Pending, ApprovalInfo{ID: a.ID, RunID: a.RunID, Session: r.ChildKey, Tool: a.Tool, Class: a.Class,
				Args: a.ArgsSummary, ExpiresAt: time.UnixMilli(a.ExpiresAt).UTC().Format(time.RFC3339)})
			fmt.Fprintf(&b, "- %s: %s (%s) in %s, run %s: %s\n", a.ID, a.Tool, a.Class, r.ChildKey, a.RunID, a.ArgsSummary)
		}
		if len(out.Pending) == 0 {
			return out, "No approvals are waiting for you.", nil
		}
		return out, fmt.Sprintf("%d approval(s) waiting (approvals {action: approve|deny, id}):\n%s", len(out.Pending), b.String()), nil
	}
	if in.ID == "" {
		return ApprovalsOut{}, "", fmt.Errorf("id is required for %s: approvals {action: list} shows the ids", in.Action)
	}
	if call.Caller.RunID != "" {
		return ApprovalsOut{}, "", &policy.Denied{Decision: policy.Decision{Rule: "approvals.human",
			Message: "approvals are decided by a human through an MCP client, not by an agent run"}}
	}
	a, err := st.GetApproval(ctx, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return ApprovalsOut{}, "", fmt.Errorf("no approval %q (approvals {action: list} shows yours)", in.ID)
	}
	if err != nil {
		return ApprovalsOut{}, "", err
	}
	if _, err := ownRun(ctx, call, a.RunID); err != nil {
		var den *policy.Denied
		if errors.As(err, &den) {
			return ApprovalsOut{}, "", fmt.Errorf("no approval %q (approvals {action: list} shows yours)", in.ID)
		}
		return ApprovalsOut{}, "", err
	}
	approve := in.Action == "approve"
	if err := runs.Decide(ctx, a.ID, approve, call.Caller.Key); err != nil {
		if errors.Is(err, spruntime.ErrNotPending) {
			cur, _ := st.GetApproval(ctx, a.ID)
			state := ""
			if cur != nil {
				state = cur.State
			}
			return ApprovalsOut{}, "", fmt.Errorf("approval %s is already %s: it cannot be decided again", a.ID, state)
		}
		return ApprovalsOut{}, "", err
	}
	state := store.ApprovalDenied
	if approve {
		state = store.ApprovalApproved
	}
	return ApprovalsOut{Action: in.Action, ID: a.ID, State: state},
		fmt.Sprintf("Approval %s %s: run %s resumes (%s).", a.ID, state, a.RunID, a.Tool), nil
}

// ApprovalsTool is approvals: tool calls of background runs parked for a human.
func ApprovalsTool() *Tool {
	return Define(Meta{Name: "approvals", Title: "Parked approvals", Class: policy.ClassMutate, DeferApproval: true,
		Annotations: Annotations{ReadOnly: false, Destructive: false, Idempotent: false, OpenWorld: false},
		Description: "Tool calls of your background runs waiting for a human: list, or approve/deny one by id (the run resumes)."},
		approvalsRun)
}
