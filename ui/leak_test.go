package ui

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine its tests started is still
// running after the last test: the change poller and every event stream
// must end with Close and the HTTP server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
