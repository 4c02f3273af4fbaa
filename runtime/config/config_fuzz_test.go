package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// parseBounded runs Parse with a watchdog: a document that keeps Parse
// busy for seconds is a hang, reported with the input and every stack so
// that the fuzzer saves it as a crasher instead of stalling silently.
func parseBounded(t *testing.T, data []byte) (*Config, error) {
	t.Helper()
	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := Parse(data, "fuzz.toml")
		done <- result{cfg, err}
	}()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-timer.C:
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("Parse did not return within 5s on %q\n%s", data, buf)
		return nil, nil
	}
}

// FuzzParse feeds arbitrary documents to Parse: it must never panic, and a
// failure is always a *Error whose every problem says what is wrong. A
// document that parses yields a config whose accessors work.
//
// Seeds: the f.Add documents below, testdata/example.toml and demo.toml,
// and testdata/fuzz/FuzzParse/.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"example.toml", "demo.toml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name)); err == nil {
			f.Add(b)
		}
	}
	for _, doc := range []string{
		"",
		"[mcp]\nagent = \"main\"\n",
		"[mcp\n",
		"[[agents.list]]\nid = \"a\"\n[agents.list.subagents]\nthinking = \"loud\"\n",
		"[agents.presets.r.tool_controls]\ntool_choice = { type = \"tool\" }\n",
		"[agents.presets.x]\nsessions.can_send = \"yes\"\n",
		"a.b.c.d = { e = { f = { g = 1 } } }\n",
		"[[mcp_servers]]\nname = \"a__b\"\ncommand = \"x\"\nargs = [1, \"b\"]\n",
		"[store]\npath = \"~\"\n",
		"[[models]]\n[[models]]\nid = \"x\"\nprovider = \"x\"\ncost = { input = -1.0, output = nan }\n",
		"[providers.\"Ünïcode\"]\nkind = \"scripted\"\nscript = \"/abs\"\n",
		"[agents.defaults.subagents]\nmax_children_per_agent = 9223372036854775807\nmax_concurrent = -9223372036854775808\n",
		"[[agents.list]]\n[[agents.list.x]]\n[agents.list.x.y]\n",
		"x = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
		"\"\" = 1\n[\"\"]\n'' = 2\n",
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseBounded(t, data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned both a config and an error: %v", err)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *config.Error: %v", err, err)
			}
			if len(ce.Problems) == 0 {
				t.Fatalf("*config.Error with no problems")
			}
			for i, p := range ce.Problems {
				if strings.TrimSpace(p.Msg) == "" {
					t.Fatalf("problem %d (path %q) has an empty message", i, p.Path)
				}
				if p.Line < 0 {
					t.Fatalf("problem %d has line %d", i, p.Line)
				}
			}
			if !strings.HasPrefix(ce.Error(), "config fuzz.toml: ") {
				t.Fatalf("error does not name the file: %q", ce.Error())
			}
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		// The accessors of a valid config must work on whatever it holds.
		_ = cfg.Source()
		_ = cfg.Line("agents.list[0].subagents.thinking")
		_, _ = cfg.SubagentModel("main")
		for _, a := range cfg.Agents.List {
			if _, ok := cfg.Agent(a.ID); !ok {
				t.Fatalf("agent %q listed but not found", a.ID)
			}
			_, _ = cfg.SubagentModel(a.ID)
		}
		for _, m := range cfg.Models {
			if _, ok := cfg.ModelByID(m.ID); !ok {
				t.Fatalf("model %q listed but not found", m.ID)
			}
		}
	})
}
