package provider

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Provider kinds accepted in Config.Kind.
const (
	KindAnthropic        = "anthropic"         // Anthropic Messages API
	KindOpenAI           = "openai"            // OpenAI Responses API
	KindOpenAIChat       = "openai-chat"       // OpenAI Chat Completions
	KindOpenAICompatible = "openai-compatible" // Chat Completions at any base_url; the key may be empty
	KindSampling         = "sampling"          // the MCP client's model via sampling/createMessage
	KindScripted         = "scripted"          // canned turns from a script file; tests and demos
)

// Kinds returns the valid Config.Kind values.
func Kinds() []string {
	return []string{KindAnthropic, KindOpenAI, KindOpenAIChat, KindOpenAICompatible, KindSampling, KindScripted}
}

// Default settings applied by New.
const (
	DefaultTimeout    = 120 * time.Second // per HTTP attempt when Config.Timeout is 0
	DefaultMaxRetries = 3                 // when Config.MaxRetries is 0
)

// Options carries the dependencies New injects into providers. A nil
// *Options, and any zero field, takes the default.
type Options struct {
	// HTTPClient sends the HTTP providers' requests; default: a client of
	// its own with no overall timeout (Config.Timeout bounds each attempt).
	HTTPClient *http.Client
	// Logger receives retry and fallback notes; default: discard.
	Logger *slog.Logger
	// Sampler is the MCP client bridge the sampling provider calls; the
	// sampling provider fails each call while it is nil.
	Sampler Sampler
	// Sleep waits between retries; it must return ctx.Err() as soon as ctx
	// is done. Default: a timer. Tests inject one to record the waits.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock used to read an HTTP-date retry-after; default time.Now.
	Now func() time.Time
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.HTTPClient == nil {
		out.HTTPClient = &http.Client{}
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if out.Sleep == nil {
		out.Sleep = sleepCtx
	}
	if out.Now == nil {
		out.Now = time.Now
	}
	return out
}

// New builds the provider instance called name from cfg. It validates the
// configuration (kind, API key, base URL, script) and returns an error that
// names the provider and the fix; it makes no network call.
func New(name string, cfg Config, opts *Options) (Provider, error) {
	o := opts.withDefaults()
	switch cfg.Kind {
	case KindAnthropic, KindOpenAI, KindOpenAIChat, KindOpenAICompatible:
		hc, err := newHTTPClient(name, cfg, o)
		if err != nil {
			return nil, err
		}
		switch cfg.Kind {
		case KindAnthropic:
			return &anthropicProvider{http: hc}, nil
		case KindOpenAI:
			return &responsesProvider{http: hc}, nil
		default:
			return &chatProvider{http: hc, compatible: cfg.Kind == KindOpenAICompatible}, nil
		}
	case KindScripted:
		if cfg.Script == "" {
			return nil, fmt.Errorf("provider %s (kind scripted): script is required: set script = \"path/to/file.script.json\"", name)
		}
		s, err := LoadScript(cfg.Script)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", name, err)
		}
		return NewScripted(name, s, &o), nil
	case KindSampling:
		return &samplingProvider{name: name, sampler: o.Sampler}, nil
	case "":
		return nil, fmt.Errorf("provider %s: kind is required (one of %s)", name, strings.Join(Kinds(), ", "))
	default:
		return nil, fmt.Errorf("provider %s: unknown kind %q (valid: %s)", name, cfg.Kind, strings.Join(Kinds(), ", "))
	}
}

// newHTTPClient checks the settings shared by the HTTP providers.
func newHTTPClient(name string, cfg Config, o Options) (*httpClient, error) {
	base := cfg.BaseURL
	switch {
	case base != "":
	case cfg.Kind == KindAnthropic:
		base = "https://api.anthropic.com"
	case cfg.Kind == KindOpenAICompatible:
		return nil, fmt.Errorf("provider %s (kind %s): base_url is required, e.g. http://127.0.0.1:11434/v1 for Ollama", name, cfg.Kind)
	default:
		base = "https://api.openai.com/v1"
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("provider %s (kind %s): base_url %q is not an http(s) URL", name, cfg.Kind, base)
	}
	if cfg.APIKey == "" && cfg.Kind != KindOpenAICompatible {
		return nil, fmt.Errorf("provider %s (kind %s): no API key: set api_key_env to the name of an environment variable holding it", name, cfg.Kind)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	retries := cfg.MaxRetries
	switch {
	case retries == 0:
		retries = DefaultMaxRetries
	case retries < 0:
		retries = 0
	}
	return &httpClient{
		name:       name,
		kind:       cfg.Kind,
		baseURL:    strings.TrimRight(base, "/"),
		apiKey:     cfg.APIKey,
		client:     o.HTTPClient,
		logger:     o.Logger,
		sleep:      o.Sleep,
		now:        o.Now,
		timeout:    timeout,
		maxRetries: retries,
	}, nil
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
