package runtime

import (
	"context"
	"encoding/json"
	"sync"
)

// Yield is what a child hands back with sessions_yield.
type Yield struct {
	Result          json.RawMessage
	Reason          string
	CloseAfterYield bool
}

// YieldSink receives a run's sessions_yield. The loop puts one in the
// context of every tool call it makes; outside a run there is none.
type YieldSink struct {
	mu     sync.Mutex
	y      *Yield
	schema *compiledSchema
}

type yieldKey struct{}

// WithYieldSink returns ctx carrying sink.
func WithYieldSink(ctx context.Context, sink *YieldSink) context.Context {
	return context.WithValue(ctx, yieldKey{}, sink)
}

// YieldSinkFrom returns the run's sink, or nil outside a run.
func YieldSinkFrom(ctx context.Context) *YieldSink {
	s, _ := ctx.Value(yieldKey{}).(*YieldSink)
	return s
}

// Set records the yield. When the run has an output schema the result
// must validate against it; the error says why it does not, and the run
// goes on so the model can correct it.
func (s *YieldSink) Set(y Yield) error {
	if s.schema != nil {
		if err := s.schema.validate(y.Result); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.y == nil {
		s.y = &y
	}
	return nil
}

// Get returns the yield, if any.
func (s *YieldSink) Get() *Yield {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.y
}
