package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxExcerpt bounds the body text quoted in an error message.
const maxExcerpt = 300

// apiErrorMessage extracts the API's own error message from an error body:
// Anthropic {"type":"error","error":{"type","message"}}, OpenAI
// {"error":{"message","type","code"}}, Ollama {"error":"..."}, vLLM/FastAPI
// {"detail":...} or a bare {"message":...}. It falls back to an excerpt of
// the body of at most 300 characters.
func apiErrorMessage(status int, body []byte) string {
	if msg := strings.TrimSpace(apiMessage(status, body)); msg != "" {
		return msg
	}
	// A blank message (e.g. {"error":{"message":" "}}) says nothing: name the status.
	if text := http.StatusText(status); text != "" {
		return text + " (no error message in the body)"
	}
	return fmt.Sprintf("status %d (no error message in the body)", status)
}

func apiMessage(status int, body []byte) string {
	var env struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &env) == nil {
		if len(env.Error) > 0 {
			var obj struct {
				Type    string          `json:"type"`
				Message string          `json:"message"`
				Code    json.RawMessage `json:"code"`
			}
			var str string
			switch {
			case json.Unmarshal(env.Error, &obj) == nil && strings.TrimSpace(obj.Message) != "":
				msg := obj.Message
				if obj.Type != "" {
					msg = obj.Type + ": " + msg
				}
				if code := strings.Trim(string(obj.Code), `"`); code != "" && code != "null" && code != obj.Type {
					msg += " (code " + code + ")"
				}
				return msg
			case json.Unmarshal(env.Error, &str) == nil && strings.TrimSpace(str) != "":
				return str
			}
		}
		if strings.TrimSpace(env.Message) != "" {
			return env.Message
		}
		if len(env.Detail) > 0 && string(env.Detail) != "null" {
			var str string
			if json.Unmarshal(env.Detail, &str) == nil {
				return str
			}
			return excerpt(env.Detail)
		}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if text := http.StatusText(status); text != "" {
			return text + " (empty body)"
		}
		return fmt.Sprintf("status %d (empty body)", status)
	}
	return excerpt(body)
}

// excerpt returns at most maxExcerpt characters of b on one line.
func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if utf8.RuneCountInString(s) <= maxExcerpt {
		return s
	}
	r := []rune(s)
	return string(r[:maxExcerpt]) + "…"
}

// decodeJSON decodes a successful response body into v, telling a truncated
// body from malformed JSON.
func decodeJSON(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) && strings.Contains(syn.Error(), "unexpected end of JSON input") {
		return fmt.Errorf("truncated response body (%d bytes, JSON ends early): %s", len(body), excerpt(body))
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("unexpected response shape: %v; body: %s", err, excerpt(body))
	}
	return fmt.Errorf("malformed JSON response: %v; body: %s", err, excerpt(body))
}

// retryableStatus reports whether an HTTP status is worth retrying:
// 408, 429, 500, 502, 503, 504 and Anthropic's 529 (overloaded).
func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout, 529:
		return true
	}
	return false
}
