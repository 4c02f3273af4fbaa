package tools

import (
	"context"

	"github.com/sessionplane/sessionplane/runtime/store"
)

// Recorder builds a client's tool call's transcript record from the
// call's result ahead of time, so a tool whose one write can carry it
// (sessions_spawn: the create-run transaction) commits the record with its
// mutation, one writer round trip instead of two. The MCP layer sets it on
// the call's context and, when the carried record committed with the
// result it was given, does not record the call again.
type Recorder interface {
	// Record returns the record for tool's result, or nil when it is not
	// for this tool call (another tool, or already taken).
	Record(tool string, res Result) *store.CallRecord
}

type recorderKey struct{}

// WithRecorder returns ctx carrying r for the tool call made with it.
func WithRecorder(ctx context.Context, r Recorder) context.Context {
	return context.WithValue(ctx, recorderKey{}, r)
}

// record returns the transcript record of this call if it ended now with
// out and text (nil when nobody asked for one).
func (c *Call) record(ctx context.Context, out any, text string) *store.CallRecord {
	r, _ := ctx.Value(recorderKey{}).(Recorder)
	if r == nil || c.tool == nil {
		return nil
	}
	return r.Record(c.tool.Name, c.result(out, text))
}
