package certe2e

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// pemPair is a certificate and its PKCS#8 private key, both PEM.
type pemPair struct {
	serial string // hex, as flowgate and certs.SerialHex print it
	cert   []byte
	key    []byte
}

// newPair issues a certificate from ca for localhost and 127.0.0.1 with
// the given serial.
func newPair(t testing.TB, ca *harness.TestCA, serial int64) pemPair {
	t.Helper()
	cert, key := ca.Leaf(t, serial, "localhost", "127.0.0.1")
	return pemPair{serial: strconv.FormatInt(serial, 16), cert: cert, key: key}
}

// certFiles are the paths of a served certificate and key.
type certFiles struct{ cert, key string }

func newCertFiles(dir string) certFiles {
	return certFiles{cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key")}
}

// replace writes the pair the way configuration tools do: each file to a
// temporary file renamed over the old one, the certificate first.
func (f certFiles) replace(t testing.TB, p pemPair) {
	t.Helper()
	harness.ReplaceFile(t, f.cert, p.cert)
	harness.ReplaceFile(t, f.key, p.key)
}

// overwrite writes the pair in place the way a naive writer does: each file
// truncated and rewritten, the certificate first, with pause in between.
// Until the key is written the certificate and key do not match.
func (f certFiles) overwrite(t testing.TB, p pemPair, pause time.Duration) {
	t.Helper()
	if err := os.WriteFile(f.cert, p.cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if pause > 0 {
		time.Sleep(pause)
	}
	if err := os.WriteFile(f.key, p.key, 0o600); err != nil {
		t.Fatal(err)
	}
}
