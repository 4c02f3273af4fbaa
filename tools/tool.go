// Package tools owns sessionplane's tool set, independent of any transport:
// one definition per tool (a typed input/output struct pair whose JSON
// schemas are derived from the types, an action class, annotations and a
// handler) and a Registry whose Call is the one path every call takes —
// from an MCP client or a child agent — through validation and the policy
// gate to the handler.
package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
)

// Annotations are the MCP tool hints, set explicitly on every tool.
type Annotations struct {
	ReadOnly    bool
	Destructive bool
	Idempotent  bool
	OpenWorld   bool
}

// Result is what a tool call returns, whatever the transport.
type Result struct {
	// Structured is the typed output (or a Refusal / ErrorOut), shown to MCP
	// clients as structuredContent.
	Structured any
	// Text is the rendering a model reads.
	Text string
	// IsError marks failures and refusals.
	IsError bool
	// Park is set when the call needs a human's approval that nobody can
	// give now, in a background run: the run parks (runtime.Park).
	Park *spruntime.Park
}

// Call carries what a handler may use besides its arguments.
type Call struct {
	Caller policy.Caller
	Env    *Env
	// Notes are appended to the text result (e.g. an approval note).
	Notes []string
	// Progress reports progress of a long call (no-op when nil).
	Progress func(progress, total float64, message string)

	reg      *Registry
	approver Approver
	pending  *policy.Decision // approval a DeferApproval tool still has to get
	tool     *Tool
	targets  policy.Targets
}

// NoApproval waives a pending deferred approval for an action that only
// reads (subagents list, info, log).
func (c *Call) NoApproval() { c.pending = nil }

// Approve asks for the approval the gate required of a DeferApproval tool
// (a no-op when none is pending). summary is shown to the human.
func (c *Call) Approve(ctx context.Context, summary string) error {
	if c.pending == nil {
		return nil
	}
	d := *c.pending
	c.pending = nil
	res, ok := c.reg.ask(ctx, c.Caller, c.approver, c.tool, d, c.targets, summary, c)
	if ok {
		return nil
	}
	if res.Park != nil {
		return &parkError{res: res}
	}
	r := res.Structured.(Refusal)
	return &policy.Denied{Decision: policy.Decision{Rule: r.Rule, Hint: r.Hint, Message: r.Message}}
}

func (c *Call) registry() *Registry { return c.reg }

// Note adds a line to the result text.
func (c *Call) Note(format string, args ...any) {
	c.Notes = append(c.Notes, fmt.Sprintf(format, args...))
}

// Tool is one tool definition.
type Tool struct {
	Name         string
	Title        string
	Description  string
	Class        policy.Class
	Annotations  Annotations
	InputSchema  json.RawMessage
	OutputSchema json.RawMessage
	// ChildOnly tools make sense only inside a child run (sessions_yield);
	// the MCP surface does not list them.
	ChildOnly bool
	// DeferApproval tools ask for approval themselves (Call.Approve), after
	// their own guards, so refusals come in a documented order.
	DeferApproval bool

	decode  func(raw json.RawMessage) (any, error)
	targets func(in any) policy.Targets
	run     func(ctx context.Context, call *Call, in any) (any, string, error)
	// derive derives the schemas from the types now, bypassing
	// schemas.txt, with the lines it needs there (TestSchemaCache).
	derive func() (in, out json.RawMessage, entries map[string]json.RawMessage)
}

// Meta describes a tool for Define.
type Meta struct {
	Name          string
	Title         string
	Description   string
	Class         policy.Class
	Annotations   Annotations
	ChildOnly     bool
	DeferApproval bool
}

// Handler is a typed tool handler. It returns the structured output and the
// text rendering for a model; an error becomes an isError result.
type Handler[In, Out any] func(ctx context.Context, call *Call, in In) (Out, string, error)

// Targeter is implemented by inputs that name sessions, agents or a
// message role, so the policy gate can check them before dispatch.
type Targeter interface {
	Targets() policy.Targets
}

// Define builds a tool from its typed handler; the input and output JSON
// schemas are derived from In and Out (see schema.go for the tags), or
// read from schemas.txt when it holds them for these types
// (schema_cache.go).
func Define[In, Out any](m Meta, h Handler[In, Out]) *Tool {
	t := &Tool{
		Name:          m.Name,
		Title:         m.Title,
		Description:   m.Description,
		Class:         m.Class,
		Annotations:   m.Annotations,
		ChildOnly:     m.ChildOnly,
		DeferApproval: m.DeferApproval,
		InputSchema:   schemaOf[In](),
		OutputSchema:  outputSchemaOf[Out](),
		derive: func() (in, out json.RawMessage, entries map[string]json.RawMessage) {
			return mustSchema[In](true), outputSchema[Out](), schemaEntries[In, Out]()
		},
	}
	var zero In
	_, custom := any(&zero).(json.Unmarshaler)
	t.decode = func(raw json.RawMessage) (any, error) {
		var in In
		if emptyArgs(raw) && !custom {
			return in, nil // what decoding {} gives, without a decoder
		}
		if len(raw) == 0 || string(raw) == "null" {
			raw = json.RawMessage("{}")
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return nil, decodeError(err)
		}
		return in, nil
	}
	t.targets = func(in any) policy.Targets {
		if tg, ok := in.(Targeter); ok {
			return tg.Targets()
		}
		return policy.Targets{}
	}
	t.run = func(ctx context.Context, call *Call, in any) (any, string, error) {
		out, text, err := h(ctx, call, in.(In))
		return out, text, err
	}
	return t
}

// emptyArgs reports whether raw is no arguments at all: absent, null or
// exactly {} (how the MCP server passes a call without arguments).
func emptyArgs(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "{}" || string(raw) == "null"
}

func decodeError(err error) error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Errorf("argument %s: expected %s, got JSON %s", ute.Field, ute.Type, ute.Value)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return fmt.Errorf("unknown argument %s: remove it (see the tool's input schema for the accepted arguments)", strings.TrimPrefix(msg, "json: unknown field "))
	}
	return fmt.Errorf("arguments are not valid JSON: %v", err)
}

// parkError carries a park out of a DeferApproval handler (which asks
// before it acts, so nothing was done).
type parkError struct{ res Result }

func (e *parkError) Error() string { return e.res.Text }
