package policy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine its tests started is still
// running after the last test: whoever starts a goroutine must end it
// (Close is cancel, then wait).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
