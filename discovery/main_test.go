package discovery

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// watcher must stop with its context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
