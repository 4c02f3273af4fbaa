package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Role is the author of a message in a provider conversation.
type Role string

// Conversation roles.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool" // carries ToolResults for the preceding assistant ToolCalls
)

// Message is one turn of the conversation sent to a model.
type Message struct {
	Role        Role         `json:"role"`
	Text        string       `json:"text,omitempty"`
	ToolCalls   []ToolCall   `json:"tool_calls,omitempty"`   // assistant only
	ToolResults []ToolResult `json:"tool_results,omitempty"` // tool only
	// Reasoning is the provider's opaque reasoning state for an assistant
	// turn, copied from Response.Reasoning. Persist it with the message and
	// send it back unchanged: Anthropic refuses a tool-use turn with thinking
	// enabled unless its signed thinking blocks come back with the results.
	Reasoning *Reasoning `json:"reasoning,omitempty"`
}

// Reasoning is provider-specific reasoning state that must travel back to the
// same wire API verbatim. Format names the wire API that produced it
// ("anthropic"); a provider ignores Reasoning of any other format, so a
// conversation may move between providers.
type Reasoning struct {
	Format string          `json:"format"` // the producing wire API: "anthropic"
	Items  json.RawMessage `json:"items"`  // a JSON array of the API's own blocks
}

// ToolCall is a model's request to run a tool.
type ToolCall struct {
	ID   string          `json:"id"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args"`
}

// ToolResult answers one ToolCall.
type ToolResult struct {
	CallID  string `json:"call_id"`
	Name    string `json:"name"`
	Content string `json:"content"`
	IsError bool   `json:"is_error,omitempty"`
}

// ToolSpec is a tool schema offered to the model.
type ToolSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"schema"` // JSON Schema object for the arguments
}

// ToolChoice says whether and which tool the model must call.
// Mode is one of "auto" (default when empty), "any", "none", "tool" (Name set).
type ToolChoice struct {
	Mode string `json:"mode,omitempty"`
	Name string `json:"name,omitempty"`
}

// Request is one model call.
type Request struct {
	Model      string     // the provider-side model name
	System     string     // system prompt
	Messages   []Message  // the conversation, oldest first
	Tools      []ToolSpec // tools offered (already filtered by active_tools)
	ToolChoice ToolChoice
	Thinking   string // "" or "off" | "low" | "medium" | "high"
	MaxTokens  int    // 0 = provider default
}

// Usage is the token accounting of one call.
type Usage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// Response is a model's answer to one Request.
type Response struct {
	Text       string     // final or interim assistant text
	ToolCalls  []ToolCall // tools the model asks to run; empty = final answer
	Usage      Usage
	StopReason string // provider's stop reason, verbatim
	Model      string // the model the provider says answered
	// Reasoning is opaque reasoning state to copy into the assistant Message
	// that records this answer; nil when the provider returned none.
	Reasoning *Reasoning
}

// Provider is one configured model endpoint.
//
// Complete must honour ctx: cancelling it aborts the in-flight request and
// returns ctx.Err() (possibly wrapped). Implementations are safe for
// concurrent use.
type Provider interface {
	// Name is the configured instance name ("local", "anthropic", ...).
	Name() string
	// Complete sends one request and returns the model's answer.
	Complete(ctx context.Context, req Request) (*Response, error)
}

// Config configures one provider instance ([providers.<name>] in the TOML).
type Config struct {
	Kind       string        // anthropic | openai | openai-chat | openai-compatible | sampling | scripted
	BaseURL    string        // empty = the API's public default (https://api.anthropic.com, https://api.openai.com/v1); OpenAI-style URLs end in /v1
	APIKey     string        // resolved from api_key_env by the caller; may be empty
	Script     string        // scripted only: path of the script file
	Timeout    time.Duration // per HTTP request; 0 = 120s
	MaxRetries int           // retries on 429/5xx/connection errors; 0 = 3, negative = none
}

// Error is a provider failure that names provider, model and HTTP status.
// Every error a Provider returns is an *Error; use errors.As to branch on
// Status or Retryable, and errors.Is(err, context.Canceled) for cancellation.
type Error struct {
	Provider  string
	Model     string
	Status    int // HTTP status; 0 when none (connection error, decode error)
	Message   string
	Retryable bool
	// RetryAfter is the wait the server asked for (retry-after,
	// retry-after-ms); 0 when it named none.
	RetryAfter time.Duration
	// Err is the underlying cause (ctx.Err(), a net error); may be nil.
	Err error
}

// Unwrap returns the underlying cause, so errors.Is sees ctx.Err().
func (e *Error) Unwrap() error { return e.Err }

// Error formats the failure as "provider NAME (model M): HTTP S: message".
func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("provider %s (model %s): HTTP %d: %s", e.Provider, e.Model, e.Status, e.Message)
	}
	return fmt.Sprintf("provider %s (model %s): %s", e.Provider, e.Model, e.Message)
}
