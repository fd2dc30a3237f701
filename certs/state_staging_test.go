package certs

import (
	"os"
	"path/filepath"
	"testing"
)

// A crash during an atomic write leaves its staging file behind; the next
// start removes it and nothing else.
func TestEnsureStateDirRemovesStaleStaging(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "."+CAKeyFileName+".tmp-123456")
	keep := []string{filepath.Join(dir, CAKeyFileName), filepath.Join(dir, "notes.tmp-1"), filepath.Join(dir, LeafCertFileName+".corrupt-20261204")}
	for _, f := range append(keep, stale) {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := ensureStateDir(dir); err != nil {
		t.Fatalf("ensureStateDir: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("staging file %s: got %v; want it removed", stale, err)
	}
	for _, f := range keep {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v; want it kept", f, err)
		}
	}
}
