package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/sessionplane/sessionplane/policy"
	spruntime "github.com/sessionplane/sessionplane/runtime"
	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/store"
)

// Env is what handlers depend on. It is built once by main.
type Env struct {
	Store   *store.Store
	Config  *config.Config
	Policy  *policy.Engine
	Runtime *spruntime.Runtime
	Runs    *spruntime.Manager
	Log     *slog.Logger
	// Delivered, when set, is told that a message was delivered to an MCP
	// client's session (so a client connected here can be notified).
	Delivered func(key string)
}

// Approver asks a human to approve a call. Implementations return
// ErrCannotAsk when there is no way to ask (the client has no elicitation).
type Approver interface {
	Approve(ctx context.Context, req ApprovalRequest) (bool, error)
}

// ErrCannotAsk is returned by an Approver that has no human to ask.
var ErrCannotAsk = errors.New("the client cannot be asked for approval")

// ApprovalRequest describes a call waiting for approval.
type ApprovalRequest struct {
	Tool    string
	Class   policy.Class
	Caller  string   // caller session key
	Targets []string // sessions the call names
	Summary string   // task or message text, shortened
}

// Refusal is the structured content of a call the gate refused.
type Refusal struct {
	Status  string `json:"status" jsonschema:"always forbidden" schema:"enum=forbidden"`
	Tool    string `json:"tool"`
	Rule    string `json:"rule"`
	Hint    string `json:"hint,omitempty"`
	Message string `json:"message"`
}

// ErrorOut is the structured content of a call that failed.
type ErrorOut struct {
	Status  string `json:"status" jsonschema:"always error" schema:"enum=error"`
	Tool    string `json:"tool"`
	Message string `json:"message"`
}

// failer is implemented by outputs that can report a failure in their own
// shape (status "error"): the result is then marked isError too, so a
// client that reads only isError sees it.
type failer interface{ Failed() bool }

// Registry holds the tool set and runs calls through the gate.
type Registry struct {
	env     *Env
	tools   map[string]*Tool
	order   []string
	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
	// noArgs holds, per tool, what validating {} against its input schema
	// gave (nil when valid): a call without arguments is checked once.
	noArgs map[string]error
	// autoNoted holds caller key + action class pairs already told that an
	// "auto" approval proceeded without asking: the note is said once.
	autoNoted sync.Map
}

// NewRegistry returns a registry over env holding tools.
func NewRegistry(env *Env, ts ...*Tool) *Registry {
	r := &Registry{env: env, tools: map[string]*Tool{}, schemas: map[string]*jsonschema.Schema{}, noArgs: map[string]error{}}
	for _, t := range ts {
		r.Add(t)
	}
	return r
}

// Add registers a tool (replacing one of the same name).
func (r *Registry) Add(t *Tool) {
	if _, ok := r.tools[t.Name]; !ok {
		r.order = append(r.order, t.Name)
	}
	r.tools[t.Name] = t
}

// Env returns the registry's environment.
func (r *Registry) Env() *Env { return r.env }

// Names lists every registered tool name, sorted.
func (r *Registry) Names() []string {
	out := append([]string(nil), r.order...)
	sort.Strings(out)
	return out
}

// Get returns a tool by (kebab or snake) name.
func (r *Registry) Get(name string) (*Tool, bool) {
	t, ok := r.tools[policy.Canonical(name)]
	return t, ok
}

// All returns every tool in registration order.
func (r *Registry) All() []*Tool {
	out := make([]*Tool, 0, len(r.order))
	for _, n := range r.order {
		out = append(out, r.tools[n])
	}
	return out
}

// Visible returns the tools caller may call, by the same decision the
// gate applies per call (a tool it may never call is not shown).
func (r *Registry) Visible(c policy.Caller) []*Tool {
	var out []*Tool
	for _, t := range r.All() {
		if d := r.env.Policy.ToolDecision(c, t.Name, t.Class); d.Allowed() {
			out = append(out, t)
		}
	}
	return out
}

// Call is the one path of every tool call: look up, [limits], validate, decode, the
// policy gate (with approval through approver, which may be nil), then the
// handler. Failures and refusals come back as isError results; a handler
// panic is recovered into one.
func (r *Registry) Call(ctx context.Context, c policy.Caller, approver Approver, name string, raw json.RawMessage, progress func(p, total float64, msg string)) (res Result) {
	t, ok := r.Get(name)
	if !ok {
		// A tool of the catalogue this build does not have is still judged by
		// the gate first, so a caller that may not call it learns why.
		if canon := policy.Canonical(name); contains(Catalog, canon) {
			if d := r.env.Policy.ToolDecision(c, canon, ""); !d.Allowed() {
				return refusal(canon, d)
			}
			return errorResult(canon, fmt.Sprintf("%s is not available in this version of sessionplane", canon))
		}
		return errorResult(name, fmt.Sprintf("unknown tool %q (tools/list shows the tools you may call)", name))
	}
	defer func() {
		if p := recover(); p != nil {
			r.env.Log.Error("tool handler panicked", "tool", t.Name, "panic", p)
			res = errorResult(t.Name, fmt.Sprintf("internal error in %s: %v (the call was not completed; the server keeps serving)", t.Name, p))
		}
	}()
	if msg := checkLimits(r.limits(), t.Name, raw); msg != "" {
		return errorResult(t.Name, fmt.Sprintf("refused %s: %s", t.Name, msg))
	}
	if err := r.validate(t, raw); err != nil {
		return errorResult(t.Name, fmt.Sprintf("invalid arguments for %s: %v", t.Name, err))
	}
	in, err := t.decode(raw)
	if err != nil {
		return errorResult(t.Name, fmt.Sprintf("invalid arguments for %s: %v", t.Name, err))
	}
	targets := t.targets(in)
	d := r.env.Policy.Decide(ctx, c, t.Name, t.Class, targets)
	call := &Call{Caller: c, Env: r.env, Progress: progress, reg: r, approver: approver, tool: t, targets: targets}
	switch d.Effect {
	case policy.Deny:
		return refusal(t.Name, d)
	case policy.Ask:
		if t.DeferApproval {
			call.pending = &d
			break
		}
		summary := ""
		if s, ok := in.(interface{ ApprovalSummary() string }); ok {
			summary = s.ApprovalSummary()
		}
		if res, ok := r.ask(ctx, c, approver, t, d, targets, summary, call); !ok {
			return res
		}
	}
	out, text, err := t.run(ctx, call, in)
	if err == nil && call.pending != nil {
		// A DeferApproval handler must ask before acting; one that did not
		// is a bug, and the call fails closed.
		return errorResult(t.Name, "internal error: approval was required but not requested (denied)")
	}
	if err != nil {
		var pe *parkError
		if errors.As(err, &pe) {
			return pe.res
		}
		var den *policy.Denied
		if errors.As(err, &den) {
			return refusal(t.Name, den.Decision)
		}
		if r.env.Store != nil {
			err = r.env.Store.Fault(err) // a damaged or read-only file is named with its fix
		}
		return errorResult(t.Name, err.Error())
	}
	return call.result(out, text)
}

// result is the Result of a handler's output and text: its notes appended,
// an output that says it failed marked as an error.
func (c *Call) result(out any, text string) Result {
	if len(c.Notes) > 0 {
		text = strings.TrimSpace(text + "\n\n" + strings.Join(c.Notes, "\n"))
	}
	failed := false
	if f, ok := out.(failer); ok {
		failed = f.Failed()
	}
	return Result{Structured: out, Text: text, IsError: failed}
}

func (r *Registry) ask(ctx context.Context, c policy.Caller, approver Approver, t *Tool, d policy.Decision, targets policy.Targets, summary string, call *Call) (Result, bool) {
	if spruntime.Approved(ctx) {
		return Result{}, true // a parked call a human approved (approvals)
	}
	req := ApprovalRequest{Tool: t.Name, Class: t.Class, Caller: c.Key, Targets: append(append([]string{}, targets.Read...), targets.Write...), Summary: summary}
	var ok bool
	var err error = ErrCannotAsk
	if approver != nil {
		ok, err = approver.Approve(ctx, req)
	}
	switch {
	case errors.Is(err, ErrCannotAsk) && d.Mode == "elicit" && c.RunID != "":
		// A background run: nobody to ask now, so the run parks until a
		// human decides through the approvals tool.
		return Result{Park: &spruntime.Park{Class: string(t.Class), Summary: summary}, IsError: true,
			Text: fmt.Sprintf("%s is waiting for a human's approval ([approval] %s = \"elicit\")", t.Name, t.Class)}, false
	case err == nil && ok:
		return Result{}, true
	case err == nil:
		return refusal(t.Name, policy.Decision{Rule: d.Rule, Hint: d.Hint,
			Message: fmt.Sprintf("the human declined %s (approval %s for %s)", t.Name, d.Mode, t.Class)}), false
	case errors.Is(err, ErrCannotAsk) && d.Mode == "auto":
		if _, told := r.autoNoted.LoadOrStore(c.Key+"\x00"+string(t.Class), true); !told {
			call.Note("Note: %s calls need approval ([approval] %s = \"auto\"), but this client cannot be asked (no elicitation support), so they proceed without asking. (Said once per session.)", t.Class, t.Class)
		}
		return Result{}, true
	case errors.Is(err, ErrCannotAsk):
		return refusal(t.Name, policy.Decision{Rule: d.Rule, Hint: d.Hint,
			Message: fmt.Sprintf("%s needs approval ([approval] %s = \"elicit\"), but this client cannot be asked (it does not support elicitation): set [approval] %s = \"auto\" or \"none\" to allow it without asking", t.Name, t.Class, t.Class)}), false
	default:
		return refusal(t.Name, policy.Decision{Rule: d.Rule, Hint: d.Hint,
			Message: fmt.Sprintf("approval for %s failed: %v (denied)", t.Name, err)}), false
	}
}

func (r *Registry) validate(t *Tool, raw json.RawMessage) error {
	r.mu.Lock()
	sch, ok := r.schemas[t.Name]
	if !ok {
		c := jsonschema.NewCompiler()
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(t.InputSchema))
		if err == nil {
			err = c.AddResource("tool:"+t.Name, doc)
		}
		if err == nil {
			sch, err = c.Compile("tool:" + t.Name)
		}
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("schema of %s does not compile: %v", t.Name, err)
		}
		r.schemas[t.Name] = sch
	}
	r.mu.Unlock()
	if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	if string(raw) != "{}" {
		return validateRaw(sch, raw)
	}
	r.mu.Lock()
	err, ok := r.noArgs[t.Name]
	r.mu.Unlock()
	if !ok {
		err = validateRaw(sch, raw)
		r.mu.Lock()
		r.noArgs[t.Name] = err
		r.mu.Unlock()
	}
	return err
}

// validateRaw validates raw, JSON arguments, against sch.
func validateRaw(sch *jsonschema.Schema, raw json.RawMessage) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("arguments are not valid JSON: %v", err)
	}
	if err := sch.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return errors.New(strings.Join(leafMessages(ve), "; "))
		}
		return err
	}
	return nil
}

var english = message.NewPrinter(language.English)

func leafMessages(ve *jsonschema.ValidationError) []string {
	if len(ve.Causes) == 0 {
		loc := strings.Join(ve.InstanceLocation, ".")
		if loc == "" {
			loc = "arguments"
		}
		return []string{fmt.Sprintf("%s: %s", loc, ve.ErrorKind.LocalizedString(english))}
	}
	var out []string
	for _, c := range ve.Causes {
		out = append(out, leafMessages(c)...)
	}
	return out
}

func refusal(tool string, d policy.Decision) Result {
	msg := d.Message
	return Result{
		Structured: Refusal{Status: "forbidden", Tool: tool, Rule: d.Rule, Hint: d.Hint, Message: msg},
		Text:       fmt.Sprintf("forbidden: %s [rule %s]", msg, d.Rule),
		IsError:    true,
	}
}

func errorResult(tool, msg string) Result {
	return Result{Structured: ErrorOut{Status: "error", Tool: tool, Message: msg}, Text: "error: " + msg, IsError: true}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
