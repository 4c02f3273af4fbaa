package main

import (
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/sessionplane/sessionplane/runtime/config"
	"github.com/sessionplane/sessionplane/runtime/provider"
)

// checkProviders does what loading a config cannot: it reads every scripted
// provider's script (an error: the server would fail on the first run) and
// warns about api_key_env variables unset in this environment (a warning:
// the environment the client starts the server in may differ).
func checkProviders(cfg *config.Config, stderr io.Writer) error {
	names := make([]string, 0, len(cfg.Providers))
	for n := range cfg.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := cfg.Providers[n]
		if p.Kind == provider.KindScripted && p.Script != "" {
			if _, err := provider.LoadScript(p.Script); err != nil {
				return fmt.Errorf("config %s: providers.%s.script: %v", cfg.Source(), n, err)
			}
		}
		if p.APIKeyEnv != "" && os.Getenv(p.APIKeyEnv) == "" {
			fmt.Fprintf(stderr, "warning: providers.%s.api_key_env: $%s is not set here; runs on %s fail until it is set in the environment the server starts in\n", n, p.APIKeyEnv, n)
		}
	}
	return nil
}
