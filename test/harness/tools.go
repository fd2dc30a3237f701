package harness

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of the program name (curl, openssl,
// chromium…). When it is missing, the test fails under CI=true and is
// skipped, loudly, otherwise.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true: %v (test/run.sh installs it)", name, err)
	}
	t.Skipf("SKIPPED: %s not found (%v); install it to run this test", name, err)
	return ""
}
