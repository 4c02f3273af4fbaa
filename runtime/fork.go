package runtime

import (
	"context"
	"errors"
	"fmt"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// Spawn context modes: what a child starts from.
const (
	ContextNone = "none" // only its task (the default)
	ContextFork = "fork" // a copy of its requester's transcript, then its task
)

// forkPoint is the last seq of key's transcript a child may start from: all
// of it, minus a trailing assistant turn whose tool calls have no results
// yet (the requester's spawn call itself, while its loop waits on it): a
// model refuses a conversation with unanswered tool calls. 0 when the
// session has no messages or does not exist.
func (r *Runtime) forkPoint(ctx context.Context, key string) (int64, error) {
	sess, err := r.st.GetSession(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	point := int64(sess.MessageCount)
	tail, err := r.st.MessagesAfter(ctx, key, max(0, point-50))
	if err != nil {
		return 0, err
	}
	for i := len(tail) - 1; i >= 0; i-- {
		m := tail[i]
		if m.Seq > point {
			continue // appended after the count was read
		}
		if m.Role == store.RoleTool {
			break
		}
		if m.Role == store.RoleAssistant {
			if len(m.Content.ToolCalls) > 0 {
				point = m.Seq - 1
			}
			break
		}
	}
	return point, nil
}

// forkContext marks a child session to be created as a fork of its
// requester's transcript when spec asks for context "fork".
func (r *Runtime) forkContext(ctx context.Context, sess *store.Session, spec ChildSpec) error {
	switch spec.ContextMode {
	case "", ContextNone:
		return nil
	case ContextFork:
	default:
		return fmt.Errorf("context %q: use \"none\" (the child starts from its task) or \"fork\" (from a copy of your transcript)", spec.ContextMode)
	}
	at, err := r.forkPoint(ctx, spec.Parent.Key)
	if err != nil {
		return fmt.Errorf("fork the requester's transcript: %w", err)
	}
	sess.ForkedFrom, sess.ForkedAtSeq = spec.Parent.Key, at
	return nil
}
