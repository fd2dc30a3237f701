package certs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.pem")
	for i, content := range []string{"first", "second, longer content"} {
		perm := []os.FileMode{0o644, 0o600}[i]
		if err := WriteFileAtomic(path, []byte(content), perm); err != nil {
			t.Fatalf("WriteFileAtomic #%d: %v", i, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("content #%d: got %q; want %q", i, got, content)
		}
		if m := fileMode(t, path); m != perm {
			t.Errorf("mode #%d: got %o; want %o", i, m, perm)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory entries: got %d (%v); want 1, no temporary files left", len(entries), entries)
	}
}

func TestWriteFileAtomicFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "f.pem")
	err := WriteFileAtomic(path, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("WriteFileAtomic into a missing directory: got %v; want an error naming %q", err, path)
	}
}

// TestWritePairAtomicKeepsOldPair checks that when the second file cannot be
// staged, the first is not replaced either.
func TestWritePairAtomicKeepsOldPair(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(keyPath, []byte("old key"), 0o600); err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, "missing", "c.pem")
	if err := writePairAtomic(certPath, keyPath, []byte("new cert"), []byte("new key")); err == nil {
		t.Fatal("writePairAtomic with an unwritable certificate path: got nil error; want one")
	}
	got, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "old key" {
		t.Errorf("key after failed pair write: got %q; want %q", got, "old key")
	}
	if tmp := globAll(t, filepath.Join(dir, ".*")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestLoadStatePair(t *testing.T) {
	good, err := SelfSign(LeafOptions{Hosts: []string{"a.test"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := SelfSign(LeafOptions{Hosts: []string{"b.test"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		cert, key   []byte // nil: file absent
		wantErr     error  // errStateMissing, or nil
		wantCorrupt int    // number of files to be moved aside; 0: not corrupt
	}{
		{name: "valid", cert: good.CertPEM, key: good.KeyPEM},
		{name: "both missing", wantErr: errStateMissing},
		{name: "key missing", cert: good.CertPEM, wantCorrupt: 1},
		{name: "cert missing", key: good.KeyPEM, wantCorrupt: 1},
		{name: "garbage cert", cert: []byte("not pem"), key: good.KeyPEM, wantCorrupt: 2},
		{name: "truncated key", cert: good.CertPEM, key: good.KeyPEM[:40], wantCorrupt: 2},
		{name: "mismatched key", cert: good.CertPEM, key: other.KeyPEM, wantCorrupt: 2},
		{name: "empty files", cert: []byte{}, key: []byte{}, wantCorrupt: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certPath, keyPath := filepath.Join(dir, "c"), filepath.Join(dir, "k")
			if tt.cert != nil {
				os.WriteFile(certPath, tt.cert, 0o644)
			}
			if tt.key != nil {
				os.WriteFile(keyPath, tt.key, 0o600)
			}
			pair, err := loadStatePair(certPath, keyPath)
			var corrupt *corruptStateError
			switch {
			case tt.wantCorrupt > 0:
				if !errors.As(err, &corrupt) {
					t.Fatalf("loadStatePair: got %v; want a corrupt state error", err)
				}
				if len(corrupt.paths) != tt.wantCorrupt {
					t.Errorf("files to move aside: got %v; want %d", corrupt.paths, tt.wantCorrupt)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("loadStatePair: got %v; want %v", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatalf("loadStatePair: got %v; want nil", err)
				}
				if pair.Leaf.SerialNumber.Cmp(good.Certificate.Leaf.SerialNumber) != 0 {
					t.Errorf("loaded serial: got %x; want %x", pair.Leaf.SerialNumber, good.Certificate.Leaf.SerialNumber)
				}
			}
		})
	}
}

func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leaf.crt")
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("X", 3600))
	want := []string{path + ".corrupt-20260304T040607Z", path + ".corrupt-20260304T040607Z.1"}
	for i, w := range want {
		if err := os.WriteFile(path, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
		moved, err := moveAside([]string{path}, "corrupt", now)
		if err != nil {
			t.Fatal(err)
		}
		if len(moved) != 1 || moved[0] != w {
			t.Errorf("moved #%d: got %v; want [%s]", i, moved, w)
		}
		if data, err := os.ReadFile(w); err != nil || len(data) != 1 || data[0] != byte(i) {
			t.Errorf("content of %s: got %v, %v; want [%d]", w, data, err, i)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("original after moving aside: got %v; want it gone", err)
	}
}

func TestStateDirFor(t *testing.T) {
	tmp := t.TempDir()
	writableParent := filepath.Join(tmp, "varlib")
	if err := os.Mkdir(writableParent, 0o755); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(tmp, "existing")
	if err := os.Mkdir(existing, 0o700); err != nil {
		t.Fatal(err)
	}
	noParent := filepath.Join(tmp, "no", "such", "flowgate")
	env := func(xdg string) func(string) string {
		return func(k string) string {
			if k == "XDG_STATE_HOME" {
				return xdg
			}
			return ""
		}
	}
	home := func() (string, error) { return "/home/op", nil }
	noHome := func() (string, error) { return "", errors.New("no home") }
	tests := []struct {
		name   string
		system string
		xdg    string
		home   func() (string, error)
		want   string
	}{
		{name: "system dir exists and is writable", system: existing, xdg: "/xdg", home: home, want: existing},
		{name: "system dir can be created", system: filepath.Join(writableParent, "flowgate"), home: home, want: filepath.Join(writableParent, "flowgate")},
		{name: "xdg state home", system: noParent, xdg: "/xdg", home: home, want: "/xdg/flowgate"},
		{name: "relative xdg ignored", system: noParent, xdg: "rel", home: home, want: "/home/op/.local/state/flowgate"},
		{name: "home", system: noParent, home: home, want: "/home/op/.local/state/flowgate"},
		{name: "nothing else", system: noParent, home: noHome, want: noParent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stateDirFor(tt.system, env(tt.xdg), tt.home); got != tt.want {
				t.Errorf("stateDirFor: got %q; want %q", got, tt.want)
			}
		})
	}
	if got := DefaultStateDir(); !filepath.IsAbs(got) || filepath.Base(got) != "flowgate" {
		t.Errorf("DefaultStateDir: got %q; want an absolute path ending in flowgate", got)
	}
}
