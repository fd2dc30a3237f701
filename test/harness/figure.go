package harness

import "testing"

// Figure logs a measured figure with the "FIGURE:" prefix that the
// README's figures are collected from (go test -v ./test/... | grep FIGURE).
func Figure(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Logf("FIGURE: "+format, args...)
}
