// Package provider owns the model providers the agent loop calls: a neutral
// request/response shape, and one implementation per wire API (Anthropic
// Messages, OpenAI Responses, OpenAI Chat Completions and compatibles, MCP
// sampling, and a scripted replay for tests and demos).
//
// New builds a Provider from a Config; see Kinds for the valid kinds.
//
// # Why our own HTTP clients
//
// The anthropic, openai, openai-chat and openai-compatible providers are thin
// clients written here on net/http and encoding/json rather than the
// official SDKs (anthropic-sdk-go, openai-go):
//
//   - Binary size: each SDK pulls in hundreds of generated types and their
//     dependencies for the one endpoint per API we call.
//   - Stability: openai-go has broken its exported types in minor releases;
//     a server that must build reproducibly cannot chase that.
//   - Control of the wire bytes: the tests replay recorded exchanges of the
//     real APIs (testdata/providers/<kind>/) and assert the exact JSON we
//     send, down to tool_choice and thinking; with our own structs the bytes
//     on the wire are the bytes in the code.
//
// Each client is one file: it maps the neutral Request to the API's JSON,
// posts it through the shared retry loop (retry.go: backoff with jitter on
// 429, 5xx and connection errors, honouring retry-after), and maps the answer
// back. Every failure is an *Error naming provider, model, HTTP status and
// the API's own error message.
package provider
