package tools

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
)

// YieldIn is the input of sessions_yield.
type YieldIn struct {
	Result          any    `json:"result" jsonschema:"the run's result: text or any JSON value (an object when the task gave an output_schema)"`
	Reason          string `json:"reason,omitempty" jsonschema:"why the run ends here, for the requester"`
	CloseAfterYield bool   `json:"closeAfterYield,omitempty" jsonschema:"archive this child session right after the result is delivered (default false)" schema:"default=false"`
}

// YieldOut is the output of sessions_yield.
type YieldOut struct {
	Status string `json:"status" jsonschema:"yielded"`
}

func sessionsYield(ctx context.Context, call *Call, in YieldIn) (YieldOut, string, error) {
	sink := spruntime.YieldSinkFrom(ctx)
	if sink == nil {
		return YieldOut{}, "", errors.New("sessions_yield ends a child agent's run and hands its result to the requester; this caller (" + call.Caller.Key + ") is not running as a child, so there is nothing to yield to")
	}
	raw, err := json.Marshal(in.Result)
	if err != nil {
		return YieldOut{}, "", err
	}
	if err := sink.Set(spruntime.Yield{Result: raw, Reason: in.Reason, CloseAfterYield: in.CloseAfterYield}); err != nil {
		return YieldOut{}, "", err
	}
	return YieldOut{Status: "yielded"}, "Result recorded; the run ends now and the result goes to your requester.", nil
}

// YieldTool is sessions_yield (action class mutate-session).
func YieldTool() *Tool {
	return Define(Meta{Name: "sessions_yield", Title: "Yield a result", Class: policy.ClassMutate, ChildOnly: true,
		Annotations: Annotations{ReadOnly: false, Destructive: false, Idempotent: true, OpenWorld: false},
		Description: "In a child agent's run: end the run now and hand result (text or JSON) to the requester as the run's result. With an output_schema the result must match it."},
		sessionsYield)
}
