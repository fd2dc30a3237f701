package harness

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestTestCALeaf(t *testing.T) {
	ca := NewTestCA(t)
	if !ca.Cert.IsCA {
		t.Fatalf("CA certificate: got IsCA false; want true")
	}
	if block, _ := pem.Decode(ca.CertPEM); block == nil || !slices.Equal(block.Bytes, ca.Cert.Raw) {
		t.Errorf("CertPEM: got %q; want the PEM of Cert", ca.CertPEM)
	}
	if _, err := tls.X509KeyPair(ca.CertPEM, ca.KeyPEM); err != nil {
		t.Errorf("CA CertPEM and KeyPEM: got %v; want a matching pair", err)
	}

	certPEM, keyPEM := ca.Leaf(t, 0x1234, "localhost", "127.0.0.1", "flowable.example.com")
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("leaf certificate and key: %v", err)
	}
	if len(pair.Certificate) != 1 {
		t.Errorf("leaf PEM: got %d certificates; want the leaf alone", len(pair.Certificate))
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := leaf.SerialNumber.Text(16); got != "1234" {
		t.Errorf("serial: got %s; want 1234", got)
	}
	if got := leaf.Subject.CommonName; got != "localhost" {
		t.Errorf("common name: got %q; want the first host, localhost", got)
	}
	if got, want := leaf.DNSNames, []string{"localhost", "flowable.example.com"}; !slices.Equal(got, want) {
		t.Errorf("DNS names: got %q; want %q", got, want)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP addresses: got %v; want [127.0.0.1]", leaf.IPAddresses)
	}
	for _, tt := range []struct {
		host  string
		usage x509.ExtKeyUsage
	}{
		{"localhost", x509.ExtKeyUsageServerAuth},
		{"127.0.0.1", x509.ExtKeyUsageServerAuth},
		{"flowable.example.com", x509.ExtKeyUsageServerAuth},
		{"", x509.ExtKeyUsageClientAuth},
	} {
		opts := x509.VerifyOptions{Roots: ca.Pool, DNSName: tt.host, KeyUsages: []x509.ExtKeyUsage{tt.usage}}
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("verifying the leaf for %q, usage %v: %v", tt.host, tt.usage, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "other.example.com"}); err == nil {
		t.Errorf("verifying the leaf for other.example.com: got no error; want one")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: NewTestCA(t).Pool}); err == nil {
		t.Errorf("verifying the leaf against another test CA: got no error; want one")
	}
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		t.Errorf("leaf validity %v..%v: want it to include now", leaf.NotBefore, leaf.NotAfter)
	}
}

func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tls.crt")
	for _, content := range []string{"first\n", "second\n"} {
		ReplaceFile(t, path, []byte(content))
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("after ReplaceFile(%q): got %q, %v; want %q", content, got, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode: got %v; want 0600", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "tls.crt" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory: got %q; want only tls.crt (no temporary file left)", names)
	}
}
