package harness

import (
	"os"
	"path/filepath"
	"testing"
)

// ReplaceFile writes data to path the way configuration tools do: to a
// temporary file beside it (".NAME.tmp", mode 0600), renamed over path, so
// that a reader sees the old content or the new, never a part. It fails
// the test on an error.
func ReplaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
