package tools

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/sessionplane/sessionplane/policy"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// ForkIn is the input of sessions_fork.
type ForkIn struct {
	Key   string `json:"key" jsonschema:"the session to fork (aliases main, current)"`
	AtSeq int64  `json:"at_seq,omitempty" jsonschema:"copy messages up to this seq (default: all)" schema:"min=0"`
	Label string `json:"label,omitempty" jsonschema:"label of the new session"`
}

// Targets names the session read, for the gate.
func (in ForkIn) Targets() policy.Targets { return policy.Targets{Read: []string{in.Key}} }

// ForkOut is the output of sessions_fork.
type ForkOut struct {
	Key           string `json:"key" jsonschema:"the new session"`
	SessionID     string `json:"sessionId"`
	ForkedFrom    string `json:"forkedFrom"`
	AtSeq         int64  `json:"atSeq" jsonschema:"the last seq copied"`
	MessageCount  int    `json:"messageCount"`
	TranscriptURI string `json:"transcriptUri"`
}

// forkKey names a fork: agent:<agent>:fork:<uuid>, under the source's agent
// (the caller's for a key of no agent, such as cron:<id>).
func forkKey(src *store.Session, caller policy.Caller) string {
	agent := src.AgentID
	if agent == "" {
		agent = caller.AgentID
	}
	return "agent:" + agent + ":fork:" + uuid.NewString()
}

func sessionsFork(ctx context.Context, call *Call, in ForkIn) (ForkOut, string, error) {
	src, err := resolveSession(ctx, call, in.Key, "")
	if err != nil {
		return ForkOut{}, "", err
	}
	// A fork copies a transcript: that takes the right to read one, as
	// sessions_history does (a caller's own session excepted).
	if src.Key != call.Caller.Key {
		if err := policy.Check(call.Env.Policy.ToolDecision(call.Caller, "sessions_history", policy.ClassRead)); err != nil {
			return ForkOut{}, "", err
		}
	}
	key := forkKey(src, call.Caller)
	// The caller must be able to reach what it creates.
	if err := policy.Check(call.Env.Policy.Access(ctx, call.Caller, key)); err != nil {
		return ForkOut{}, "", err
	}
	label := in.Label
	if label == "" {
		label = "fork of " + labelOr(src.Label, src.Key)
	}
	s, err := call.Env.Store.ForkSession(ctx, store.Session{Key: key, AgentID: src.AgentID, Label: label, ParentKey: call.Caller.Key,
		SpawnedBy: call.Caller.Key, Depth: src.Depth, Model: src.Model, Thinking: src.Thinking, Preset: src.Preset,
		ForkedFrom: src.Key, ForkedAtSeq: in.AtSeq})
	if errors.Is(err, store.ErrNotFound) {
		return ForkOut{}, "", fmt.Errorf("session %s not found (sessions_list shows the sessions you can see)", src.Key)
	}
	if err != nil {
		return ForkOut{}, "", err
	}
	out := ForkOut{Key: s.Key, SessionID: s.ID, ForkedFrom: s.ForkedFrom, AtSeq: s.ForkedAtSeq, MessageCount: s.MessageCount,
		TranscriptURI: SessionURI(s.Key)}
	return out, fmt.Sprintf("Forked %s at seq %d into %s (%d messages copied; label %q). Continue it with sessions_send.",
		out.ForkedFrom, out.AtSeq, out.Key, out.MessageCount, label), nil
}

// ForkTool is sessions_fork.
func ForkTool() *Tool {
	return Define(Meta{Name: "sessions_fork", Title: "Fork a session", Class: policy.ClassMutate,
		Annotations: Annotations{Idempotent: false},
		Description: "Copy a session's transcript (up to at_seq) into a new session, recorded as forked from it."},
		sessionsFork)
}
