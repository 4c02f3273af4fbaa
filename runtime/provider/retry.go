package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry tuning shared by the HTTP providers.
const (
	backoffInitial = 500 * time.Millisecond
	backoffMax     = 8 * time.Second
	// maxRetryWait is the longest retry-after we sleep through; a server
	// asking for more gets its error returned at once instead.
	maxRetryWait = 60 * time.Second
	// maxBody bounds a response body read into memory.
	maxBody = 32 << 20
)

// httpClient is the transport shared by the HTTP providers: headers, the
// per-attempt timeout, and retries with backoff.
type httpClient struct {
	name       string
	kind       string
	baseURL    string
	apiKey     string
	client     *http.Client
	logger     *slog.Logger
	sleep      func(context.Context, time.Duration) error
	now        func() time.Time
	timeout    time.Duration
	maxRetries int
}

// errorf builds a non-retryable *Error without HTTP status.
func (c *httpClient) errorf(model string, cause error, format string, args ...any) *Error {
	return &Error{Provider: c.name, Model: model, Message: fmt.Sprintf(format, args...), Err: cause}
}

// canceled is the error returned when the caller's ctx ends the call.
func (c *httpClient) canceled(model string, cause error) *Error {
	return &Error{Provider: c.name, Model: model, Message: "request canceled: " + cause.Error(), Err: cause}
}

// post sends body as JSON to baseURL+path and returns the body of the first
// 2xx answer. It retries 408/429/5xx/529 and connection failures up to
// maxRetries times, waiting what retry-after-ms or retry-after asks (up to
// 60s) or else an exponential backoff with jitter; ctx cancellation stops
// it at once, also while it waits.
func (c *httpClient) post(ctx context.Context, model, path string, body any) ([]byte, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, c.errorf(model, err, "encode request: %v", err)
	}
	url := c.baseURL + path
	for attempt := 0; ; attempt++ {
		res, err := c.attempt(ctx, url, payload)
		if ctx.Err() != nil {
			return nil, c.canceled(model, ctx.Err())
		}
		var perr *Error
		switch {
		case err != nil:
			var fatal *Error
			if errors.As(err, &fatal) {
				fatal.Model = model
				return nil, fatal
			}
			perr = &Error{Provider: c.name, Model: model, Message: err.Error(), Retryable: true, Err: err}
		case res.status >= 200 && res.status < 300:
			return res.body, nil
		default:
			perr = &Error{
				Provider:   c.name,
				Model:      model,
				Status:     res.status,
				Message:    apiErrorMessage(res.status, res.body),
				Retryable:  retryableStatus(res.status),
				RetryAfter: retryAfter(res.header, c.now()),
			}
			switch res.header.Get("x-should-retry") {
			case "true":
				perr.Retryable = true
			case "false":
				perr.Retryable = false
			}
		}
		if !perr.Retryable || attempt >= c.maxRetries {
			if attempt > 0 {
				perr.Message += fmt.Sprintf(" (gave up after %d attempts)", attempt+1)
			}
			return nil, perr
		}
		wait := perr.RetryAfter
		if wait <= 0 {
			wait = backoff(attempt)
		}
		if wait > maxRetryWait {
			perr.Message += fmt.Sprintf(" (server asked to retry after %s; not waiting that long)", wait)
			return nil, perr
		}
		c.logger.Warn("provider call failed; retrying",
			"provider", c.name, "model", model, "attempt", attempt+1, "wait", wait, "error", perr.Message)
		if err := c.sleep(ctx, wait); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, c.canceled(model, err)
		}
	}
}

// attemptResult is one HTTP exchange.
type attemptResult struct {
	status int
	header http.Header
	body   []byte
}

// attempt makes one HTTP request bounded by the per-attempt timeout. An
// *Error it returns is final; any other error is a retryable transport
// failure.
func (c *httpClient) attempt(ctx context.Context, url string, payload []byte) (attemptResult, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return attemptResult{}, &Error{Provider: c.name, Message: fmt.Sprintf("build request: %v", err), Err: err}
	}
	c.setHeaders(req.Header)
	resp, err := c.client.Do(req)
	if err != nil {
		if actx.Err() != nil && ctx.Err() == nil {
			return attemptResult{}, fmt.Errorf("no answer within %s (timeout per attempt): %w", c.timeout, err)
		}
		return attemptResult{}, fmt.Errorf("connection error: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		if actx.Err() != nil && ctx.Err() == nil {
			return attemptResult{}, fmt.Errorf("HTTP %d: response body not complete within %s (timeout per attempt): %w", resp.StatusCode, c.timeout, err)
		}
		return attemptResult{}, fmt.Errorf("HTTP %d: read response body: truncated after %d bytes: %w", resp.StatusCode, len(body), err)
	}
	if len(body) > maxBody {
		return attemptResult{}, &Error{Provider: c.name, Status: resp.StatusCode, Message: fmt.Sprintf("response body larger than %d bytes", maxBody)}
	}
	return attemptResult{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// setHeaders writes the content type and each API's authentication.
func (c *httpClient) setHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	h.Set("User-Agent", "sessionplane")
	if c.kind == KindAnthropic {
		h.Set("x-api-key", c.apiKey)
		h.Set("anthropic-version", "2023-06-01")
		return
	}
	if c.apiKey != "" {
		h.Set("Authorization", "Bearer "+c.apiKey)
	}
}

// backoff is the wait before retry number attempt+1: 0.5s doubling up to
// 8s, less up to 25% jitter so that clients spread out.
func backoff(attempt int) time.Duration {
	d := backoffMax
	if attempt < 5 {
		d = min(backoffInitial<<attempt, backoffMax)
	}
	return time.Duration(float64(d) * (1 - 0.25*rand.Float64()))
}

// retryAfter reads retry-after-ms (milliseconds) or retry-after (seconds
// or an HTTP date); 0 when absent or unparsable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("retry-after"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// exchange is one call of an HTTP provider: build the API's request body,
// POST it (with retries), and parse the answer; build and parse failures
// become *Error naming provider and model like HTTP failures do.
func exchange[B any](ctx context.Context, c *httpClient, model, path string, build func() (B, error), parse func([]byte) (*Response, error)) (*Response, error) {
	body, err := build()
	if err != nil {
		return nil, c.errorf(model, err, "%v", err)
	}
	raw, err := c.post(ctx, model, path, body)
	if err != nil {
		return nil, err
	}
	resp, err := parse(raw)
	if err != nil {
		return nil, c.errorf(model, err, "%v", err)
	}
	return resp, nil
}
