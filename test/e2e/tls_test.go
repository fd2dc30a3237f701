package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// opensslCases are handshakes that flowgate must refuse or accept. The
// refused ones relax openssl's own security level so that it is the server
// that refuses, which TestOpenSSLControl proves against a permissive server.
var opensslCases = []struct {
	name   string
	args   []string
	accept bool
	proto  string // negotiated protocol when accepted
}{
	{name: "TLS 1.1", args: []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}},
	{name: "TLS 1.2 CBC suite", args: []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA@SECLEVEL=0"}},
	{name: "TLS 1.2 GCM suite", args: []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, accept: true, proto: "TLSv1.2"},
	{name: "TLS 1.3", args: []string{"-tls1_3"}, accept: true, proto: "TLSv1.3"},
}

// sClient runs openssl s_client against addr and reports whether the
// handshake succeeded, with the output.
func sClient(t *testing.T, addr string, args ...string) (bool, string) {
	t.Helper()
	bin := harness.RequireTool(t, "openssl")
	args = append([]string{"s_client", "-connect", addr, "-servername", "localhost"}, args...)
	out, errOut, code := runTool(t, "", bin, args...)
	return code == 0, out + errOut
}

// TestTLSVersionsAndCiphers checks with openssl s_client that TLS 1.1 and
// CBC suites are refused and TLS 1.2 (AEAD) and 1.3 accepted.
func TestTLSVersionsAndCiphers(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "a")
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	for _, tt := range opensslCases {
		t.Run(tt.name, func(t *testing.T) {
			ok, out := sClient(t, fg.HTTPS, tt.args...)
			if ok != tt.accept {
				t.Fatalf("handshake succeeded: got %v; want %v\n%s", ok, tt.accept, out)
			}
			if tt.accept && !strings.Contains(out, "Protocol  : "+tt.proto) && !strings.Contains(out, "New, "+tt.proto) {
				t.Errorf("got no %s session:\n%s", tt.proto, out)
			}
		})
	}
}

// TestOpenSSLControl proves that the refusals above come from flowgate:
// the same openssl commands complete a handshake with a server that allows
// TLS 1.0 and CBC suites.
func TestOpenSSLControl(t *testing.T) {
	t.Parallel()
	addr := permissiveTLSServer(t)
	for _, tt := range opensslCases {
		t.Run(tt.name, func(t *testing.T) {
			if ok, out := sClient(t, addr, tt.args...); !ok {
				t.Errorf("handshake with a permissive server failed; the openssl on this machine cannot test this case:\n%s", out)
			}
		})
	}
}

// permissiveTLSServer accepts TLS 1.0 to 1.3 with CBC suites, using an
// ECDSA certificate like flowgate's default.
func permissiveTLSServer(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	var suites []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		suites = append(suites, s.ID)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS10,
		CipherSuites: suites,
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					c.Read(make([]byte, 1)) // until openssl hangs up
				}
			}()
		}
	}()
	return ln.Addr().String()
}
