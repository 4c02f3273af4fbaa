package provider

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"conversations": [{"turns": [{}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown kind", Config{Kind: "gemini"}, `provider p: unknown kind "gemini" (valid: anthropic, openai, openai-chat, openai-compatible, sampling, scripted)`},
		{"no kind", Config{}, "provider p: kind is required (one of anthropic, openai,"},
		{"anthropic without key", Config{Kind: KindAnthropic}, "provider p (kind anthropic): no API key: set api_key_env"},
		{"openai without key", Config{Kind: KindOpenAI}, "provider p (kind openai): no API key"},
		{"openai-chat without key", Config{Kind: KindOpenAIChat}, "provider p (kind openai-chat): no API key"},
		{"compatible without base_url", Config{Kind: KindOpenAICompatible}, "base_url is required, e.g. http://127.0.0.1:11434/v1 for Ollama"},
		{"bad base_url", Config{Kind: KindOpenAICompatible, BaseURL: "localhost:11434"}, `base_url "localhost:11434" is not an http(s) URL`},
		{"scripted without script", Config{Kind: KindScripted}, "provider p (kind scripted): script is required"},
		{"scripted bad script", Config{Kind: KindScripted, Script: bad}, "provider p: script " + bad + ": conversations[0].turns[0]: a turn needs text, tool_calls or error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New("p", tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, %v; want error containing %q", p, err, tt.want)
			}
		})
	}
}

func TestNewBuildsEachKind(t *testing.T) {
	script := filepath.Join(testdataDir, "demo.script.json")
	tests := []struct {
		cfg     Config
		base    string
		retries int
		timeout time.Duration
	}{
		{Config{Kind: KindAnthropic, APIKey: "k"}, "https://api.anthropic.com", 3, 120 * time.Second},
		{Config{Kind: KindOpenAI, APIKey: "k", MaxRetries: -2}, "https://api.openai.com/v1", 0, 120 * time.Second},
		{Config{Kind: KindOpenAIChat, APIKey: "k", MaxRetries: 5, Timeout: time.Second}, "https://api.openai.com/v1", 5, time.Second},
		{Config{Kind: KindOpenAICompatible, BaseURL: "http://127.0.0.1:11434/v1/"}, "http://127.0.0.1:11434/v1", 3, 120 * time.Second},
		{Config{Kind: KindSampling}, "", 0, 0},
		{Config{Kind: KindScripted, Script: script}, "", 0, 0},
	}
	for _, tt := range tests {
		p, err := New("inst", tt.cfg, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.cfg.Kind, err)
		}
		if p.Name() != "inst" {
			t.Errorf("%s: Name() = %q", tt.cfg.Kind, p.Name())
		}
		var hc *httpClient
		switch p := p.(type) {
		case *anthropicProvider:
			hc = p.http
		case *responsesProvider:
			hc = p.http
		case *chatProvider:
			hc = p.http
			if p.compatible != (tt.cfg.Kind == KindOpenAICompatible) {
				t.Errorf("%s: compatible = %v", tt.cfg.Kind, p.compatible)
			}
		}
		if hc == nil {
			continue
		}
		if hc.baseURL != tt.base || hc.maxRetries != tt.retries || hc.timeout != tt.timeout {
			t.Errorf("%s: base %q retries %d timeout %v; want %q %d %v", tt.cfg.Kind, hc.baseURL, hc.maxRetries, hc.timeout, tt.base, tt.retries, tt.timeout)
		}
	}
	if got := strings.Join(Kinds(), ","); got != "anthropic,openai,openai-chat,openai-compatible,sampling,scripted" {
		t.Errorf("Kinds() = %s", got)
	}
}
