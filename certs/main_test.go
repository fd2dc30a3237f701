package certs

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when any goroutine (a watcher, a
// rotation loop, a test TLS server) outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
