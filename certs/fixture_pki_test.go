package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// fixtureSerials makes every generated certificate's serial unique and
// readable in failure messages.
var fixtureSerials atomic.Int64

func init() { fixtureSerials.Store(0x1000) }

// fixtureCA is a certificate authority generated for one test. No key is
// ever committed: every test builds its own.
type fixtureCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
}

// newFixtureCA creates a self-signed ECDSA P-256 root valid for a day.
func newFixtureCA(t testing.TB, name string) *fixtureCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(fixtureSerials.Add(1)),
		Subject:               pkix.Name{CommonName: name},
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
	return &fixtureCA{cert: cert, key: key, certPEM: fixturePEM("CERTIFICATE", der)}
}

// fixtureSpec describes a leaf to issue. Zero fields mean: DNS name
// "localhost" and 127.0.0.1, valid from an hour ago for a day, ECDSA P-256,
// server authentication.
type fixtureSpec struct {
	dns      []string
	notAfter time.Time
	key      string // "ecdsa" (default), "rsa2048", "rsa1024", "ed25519", "p224"
	client   bool   // client authentication instead of server
	isCA     bool   // an intermediate
}

// fixturePair is an issued certificate with its key, PEM encoded.
type fixturePair struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte // the certificate alone
	keyPEM  []byte // PKCS#8
	serial  string // SerialHex of cert
}

// issue signs a certificate for spec.
func (ca *fixtureCA) issue(t testing.TB, spec fixtureSpec) *fixturePair {
	t.Helper()
	key := fixtureKey(t, spec.key)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(fixtureSerials.Add(1)),
		Subject:      pkix.Name{CommonName: "flowgate test"},
		DNSNames:     spec.dns,
		NotBefore:    now.Add(-2 * time.Hour),
		NotAfter:     spec.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if spec.dns == nil {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if len(tmpl.DNSNames) > 0 {
		tmpl.Subject.CommonName = tmpl.DNSNames[0]
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(24 * time.Hour)
	}
	if spec.client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if spec.isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &fixturePair{
		cert:    cert,
		key:     key,
		certPEM: fixturePEM("CERTIFICATE", der),
		keyPEM:  fixturePEM("PRIVATE KEY", keyDER),
		serial:  SerialHex(cert),
	}
}

// asCA turns an intermediate pair into a CA that can issue.
func (p *fixturePair) asCA() *fixtureCA {
	return &fixtureCA{cert: p.cert, key: p.key, certPEM: p.certPEM}
}

// fixtureKey generates a key of the named kind.
func fixtureKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch kind {
	case "", "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p224":
		key, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case "rsa2048":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		// crypto/rsa refuses to generate keys under 1024 bits only; 1024 is
		// allowed and is what a legacy writer would produce.
		key, err = rsa.GenerateKey(rand.Reader, 1024)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		err = fmt.Errorf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func fixturePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// fixtureJoin joins PEM files, e.g. a leaf and its intermediate.
func fixtureJoin(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
