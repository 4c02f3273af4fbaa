package runtime

import (
	"context"

	"github.com/sessionplane/sessionplane/policy"
)

// OfferedTools lists the tools a run of caller would be shown: the tool
// box's offer (the gate's list), narrowed by active (nil = no filter), as
// RunTurn computes it. Empty when the runtime has no tool set.
func (r *Runtime) OfferedTools(ctx context.Context, c policy.Caller, active []string) []string {
	tb := r.toolbox()
	if tb == nil {
		return nil
	}
	specs := tb.Offer(ctx, c)
	if active != nil {
		specs = filterSpecs(specs, active)
	}
	out := make([]string, 0, len(specs))
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}
