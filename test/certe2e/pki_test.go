package certe2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is an ECDSA P-256 CA generated for one test; no key is ever
// committed.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "flowgate certe2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// pemPair is a certificate and its PKCS#8 private key, both PEM.
type pemPair struct {
	serial string // hex, as flowgate and certs.SerialHex print it
	cert   []byte
	key    []byte
}

// leaf issues a server certificate for localhost and 127.0.0.1 with the
// given serial.
func (ca *testCA) leaf(t testing.TB, serial int64) pemPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemPair{
		serial: tmpl.SerialNumber.Text(16),
		cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	}
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
	replaceFile(t, f.cert, p.cert)
	replaceFile(t, f.key, p.key)
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

// replaceFile writes data to a temporary file beside path and renames it
// over path.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
