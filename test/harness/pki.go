package harness

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
	"testing"
	"time"
)

// TestCA is a throw-away ECDSA P-256 certificate authority generated for
// one test, so that no private key is ever committed. Its certificates are
// valid from an hour ago to a day from now.
type TestCA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// CertPEM is Cert, PEM-encoded: the content of a CA bundle file.
	CertPEM []byte
	// KeyPEM is the CA's private key, PKCS#8 PEM, for configurations that
	// sign with the CA themselves (issuer.ca_key_file).
	KeyPEM []byte
	// Pool holds Cert alone, for tls.Config.RootCAs or ClientCAs.
	Pool *x509.CertPool

	key crypto.Signer
}

// NewTestCA generates a CA. It fails the test when generation fails.
func NewTestCA(t testing.TB) *TestCA {
	t.Helper()
	key := newTestKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "flowgate test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("creating the test CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing the test CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &TestCA{
		Cert:    cert,
		CertPEM: pemBlock("CERTIFICATE", der),
		KeyPEM:  testKeyPEM(t, key),
		Pool:    pool,
		key:     key,
	}
}

// Leaf issues a certificate signed by ca with the given serial, valid for
// hosts (DNS names or IP addresses; the first is also the subject's common
// name) and for both server and client authentication. It returns the
// certificate alone, without the CA, and its PKCS#8 private key, both PEM.
// It fails the test when hosts is empty.
func (ca *TestCA) Leaf(t testing.TB, serial int64, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	if len(hosts) == 0 {
		t.Fatal("TestCA.Leaf: no hosts; want at least one DNS name or IP address")
	}
	key := newTestKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		t.Fatalf("issuing a test certificate for %v: %v", hosts, err)
	}
	return pemBlock("CERTIFICATE", der), testKeyPEM(t, key)
}

func newTestKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating a test key: %v", err)
	}
	return k
}

func testKeyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatalf("encoding a test key: %v", err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
