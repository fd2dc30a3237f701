package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// issuerTestHosts are the hosts the issuer tests ask for.
var issuerTestHosts = []string{"flowgate.test", "localhost", "127.0.0.1", "::1"}

// testIssuerOptions returns options for an issuer in a fresh state directory
// (not yet created, so that NewIssuer creates it).
func testIssuerOptions(t testing.TB) IssuerOptions {
	t.Helper()
	return IssuerOptions{
		StateDir: filepath.Join(t.TempDir(), "state"),
		Hosts:    issuerTestHosts,
	}
}

// newTestIssuer builds an issuer or fails the test.
func newTestIssuer(t testing.TB, opts IssuerOptions) *Issuer {
	t.Helper()
	iss, err := NewIssuer(opts)
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	return iss
}

// servedLeaf is the leaf the issuer hands to a handshake for localhost.
func servedLeaf(t testing.TB, iss *Issuer) *x509.Certificate {
	t.Helper()
	c, err := iss.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	return c.Leaf
}

// caPool parses PEM certificates into a pool.
func caPool(t testing.TB, pemData []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("no certificate in CA PEM %q", pemData)
	}
	return pool
}

// verifyServerLeaf checks that leaf chains to roots for TLS server use under
// every one of hosts at time at.
func verifyServerLeaf(t testing.TB, leaf *x509.Certificate, roots *x509.CertPool, hosts []string, at time.Time) {
	t.Helper()
	for _, h := range hosts {
		_, err := leaf.Verify(x509.VerifyOptions{
			DNSName:     h,
			Roots:       roots,
			CurrentTime: at,
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("verify leaf %s for %q at %s: got %v; want nil", SerialHex(leaf), h, at, err)
		}
	}
}

// readLeafFile parses the first certificate of a PEM file.
func readLeafFile(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// testUserCA is a CA made independently of the code under test, standing
// for one an operator brings.
type testUserCA struct {
	cert              *x509.Certificate
	certPath, keyPath string
	certPEM, keyPEM   []byte
}

// newTestUserCA writes a P-256 CA valid from notBefore to notAfter into dir.
func newTestUserCA(t testing.TB, dir, name string, notBefore, notAfter time.Time) *testUserCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testUserCA{
		cert:     cert,
		certPath: filepath.Join(dir, name+".crt"),
		keyPath:  filepath.Join(dir, name+".key"),
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	if err := os.WriteFile(ca.certPath, ca.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca.keyPath, ca.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// metricValue returns the value of the gauge or counter name with exactly
// labels, and whether it exists.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// issuerLog collects log output safely across goroutines.
type issuerLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *issuerLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *issuerLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fileMode returns the permission bits of path.
func fileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// globAll returns the paths matching pattern.
func globAll(t testing.TB, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newTestLogger logs everything as text to w.
func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
