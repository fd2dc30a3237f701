package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: a
// transport's connection loop, a drain timer's work, a tunnel copy.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
