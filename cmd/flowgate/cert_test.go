package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/certs"
)

// runCertTest runs `flowgate cert args...` and returns its output.
func runCertTest(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runCert(t.Context(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// needOpenSSL returns the path of the openssl binary. Without one the test
// fails under CI=true and is skipped, loudly, elsewhere.
func needOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("openssl not found in PATH (%v): the OpenSSL interoperability tests need it in CI", err)
	}
	t.Skipf("SKIPPING: openssl not found in PATH (%v); install OpenSSL to run the interoperability checks of `flowgate cert`", err)
	return ""
}

func openssl(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestCertIssueOpenSSL(t *testing.T) {
	bin := needOpenSSL(t)
	tests := []struct {
		name       string
		days       int
		key        string
		selfSigned bool
		wantKey    []string // in openssl x509 -text
	}{
		{name: "p256 from the CA", days: 30, key: "p256", wantKey: []string{"id-ecPublicKey", "Public-Key: (256 bit)", "NIST CURVE: P-256"}},
		{name: "rsa2048 one year from the CA", days: 365, key: "rsa2048", wantKey: []string{"rsaEncryption", "Public-Key: (2048 bit)", "Key Encipherment"}},
		{name: "p384 self-signed", days: 10, key: "p384", selfSigned: true, wantKey: []string{"Public-Key: (384 bit)", "NIST CURVE: P-384"}},
		{name: "rsa2048 self-signed like openssl req -x509", days: 365, key: "rsa2048", selfSigned: true, wantKey: []string{"rsaEncryption", "Public-Key: (2048 bit)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out, state := filepath.Join(dir, "out"), filepath.Join(dir, "state")
			args := []string{"issue", "--out", out, "--host", "flowable.test", "--host", "10.1.2.3,localhost",
				"--days", strconv.Itoa(tt.days), "--key", tt.key, "--state-dir", state}
			if tt.selfSigned {
				args = append(args, "--self-signed")
			}
			stdout, stderr, err := runCertTest(t, args...)
			if err != nil {
				t.Fatalf("cert issue: %v\nstderr: %s", err, stderr)
			}
			certPath, keyPath, caPath := filepath.Join(out, "cert.pem"), filepath.Join(out, "key.pem"), filepath.Join(out, "ca.pem")
			if !strings.Contains(stdout, certPath) || !strings.Contains(stdout, keyPath) {
				t.Errorf("stdout: got %q; want the written paths", stdout)
			}

			trust := caPath
			if tt.selfSigned {
				trust = certPath
				if _, err := os.Stat(caPath); err == nil {
					t.Errorf("%s written for a self-signed certificate", caPath)
				}
			} else if a, b := readFile(t, caPath), readFile(t, filepath.Join(state, certs.CACertFileName)); !bytes.Equal(a, b) {
				t.Errorf("%s differs from the CA in the state directory", caPath)
			}
			if got := openssl(t, bin, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", trust, certPath); !strings.Contains(got, ": OK") {
				t.Errorf("openssl verify: got %q; want OK", got)
			}
			text := openssl(t, bin, "x509", "-noout", "-text", "-in", certPath)
			for _, want := range append([]string{"DNS:flowable.test", "DNS:localhost", "IP Address:10.1.2.3", "TLS Web Server Authentication", "CA:FALSE"}, tt.wantKey...) {
				if !strings.Contains(text, want) {
					t.Errorf("openssl x509 -text: missing %q in\n%s", want, text)
				}
			}
			start := parseOpenSSLDate(t, openssl(t, bin, "x509", "-noout", "-startdate", "-in", certPath))
			end := parseOpenSSLDate(t, openssl(t, bin, "x509", "-noout", "-enddate", "-in", certPath))
			if got, want := end.Sub(start), time.Duration(tt.days)*24*time.Hour+time.Hour; got != want {
				t.Errorf("validity: got %s; want %s (%d days plus the one-hour backdate)", got, want, tt.days)
			}
			certPub := openssl(t, bin, "x509", "-noout", "-pubkey", "-in", certPath)
			keyPub := openssl(t, bin, "pkey", "-pubout", "-in", keyPath)
			if certPub != keyPub {
				t.Errorf("key.pem does not belong to cert.pem:\n%s\n%s", certPub, keyPub)
			}
			if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode: got %v, %v; want 0600", fi.Mode().Perm(), err)
			}
		})
	}
}

// parseOpenSSLDate parses "notBefore=Dec  4 19:04:52 2026 GMT".
func parseOpenSSLDate(t *testing.T, line string) time.Time {
	t.Helper()
	_, v, ok := strings.Cut(strings.TrimSpace(line), "=")
	if !ok {
		t.Fatalf("unexpected openssl date line %q", line)
	}
	at, err := time.Parse("Jan _2 15:04:05 2006 MST", v)
	if err != nil {
		t.Fatalf("parsing openssl date %q: %v", v, err)
	}
	return at
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestCertIssueSharesTheAgentCA checks that `cert issue` and the agent's
// issuer use one CA when they share a state directory.
func TestCertIssueSharesTheAgentCA(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if _, stderr, err := runCertTest(t, "issue", "--out", filepath.Join(dir, "out"), "--host", "a.test", "--state-dir", state); err != nil {
		t.Fatalf("cert issue: %v\n%s", err, stderr)
	}
	iss, err := certs.NewIssuer(certs.IssuerOptions{StateDir: state, Hosts: []string{"b.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := iss.CACertificatePEM(), readFile(t, filepath.Join(dir, "out", "ca.pem")); !bytes.Equal(got, want) {
		t.Error("the agent's issuer uses another CA than `cert issue` in the same state directory")
	}
	stdout, _, err := runCertTest(t, "ca", "--state-dir", state)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(stdout), iss.CACertificatePEM()) {
		t.Errorf("cert ca: got %q; want the issuer's CA certificate", stdout)
	}
}

func TestCertIssueErrors(t *testing.T) {
	out := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"issue", "--host", "a.test"}, "--out DIR is required"},
		{"no host", []string{"issue", "--out", out}, "at least one --host"},
		{"bad host", []string{"issue", "--out", out, "--host", "https://a.test", "--self-signed"}, "without scheme"},
		{"bad key", []string{"issue", "--out", out, "--host", "a.test", "--key", "dsa"}, "unknown key type"},
		{"zero days", []string{"issue", "--out", out, "--host", "a.test", "--days", "0"}, "out of range"},
		{"too many days", []string{"issue", "--out", out, "--host", "a.test", "--days", "3650"}, "out of range"},
		{"stray argument", []string{"issue", "--out", out, "a.test"}, "unexpected argument"},
		{"unknown flag", []string{"issue", "--bogus"}, "flag provided but not defined"},
		{"no command", nil, "no command"},
		{"unknown command", []string{"renew"}, "unknown command"},
		{"show without target", []string{"show"}, "exactly one"},
		{"show missing file", []string{"show", filepath.Join(out, "nope.pem")}, "no such file"},
		{"show a key file", []string{"show", writeTemp(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))}, "no certificate found"},
		{"show refused port", []string{"show", closedAddr(t)}, "connecting to"},
		{"ca with argument", []string{"ca", "--state-dir", out, "extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCertTest(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("cert %v: got %v; want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestCertHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"issue", "show", "ca"}},
		{[]string{"issue", "--help"}, []string{"Usage: flowgate cert issue", "-host", "-days", "-key", "-self-signed", "-state-dir", "-out"}},
		{[]string{"show", "-h"}, []string{"Usage: flowgate cert show", "HOST:PORT", "-timeout"}},
		{[]string{"ca", "--help"}, []string{"Usage: flowgate cert ca", "-state-dir", certs.CACertificatePath}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, err := runCertTest(t, tt.args...)
			if err != nil {
				t.Fatalf("got %v; want nil for help", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("help on stdout: missing %q in\n%s", w, stdout)
				}
			}
			if stderr != "" {
				t.Errorf("stderr: got %q; want nothing", stderr)
			}
		})
	}
}

func TestCertShowFile(t *testing.T) {
	kp, err := certs.SelfSign(certs.LeafOptions{Hosts: []string{"flowable.test", "10.0.0.7"}, KeyType: certs.KeyP384, Lifetime: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf := kp.Certificate.Leaf
	// A combined file with the key first: the key must be skipped, not shown.
	path := writeTemp(t, "combined.pem", append(append([]byte{}, kp.KeyPEM...), kp.CertPEM...))
	stdout, _, err := runCertTest(t, "show", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Certificate 1 of 1",
		"CN=flowable.test",
		"DNS:flowable.test, IP:10.0.0.7",
		"Serial:      " + certs.SerialHex(leaf),
		"ECDSA P-384",
		"Not after:   " + leaf.NotAfter.UTC().Format(time.RFC3339),
		"Days left:   89",
		"CA:          no",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("cert show: missing %q in\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "PRIVATE") || strings.Contains(stdout, string(kp.KeyPEM[30:60])) {
		t.Errorf("cert show printed key material:\n%s", stdout)
	}

	der := writeTemp(t, "cert.der", leaf.Raw)
	if stdout, _, err := runCertTest(t, "show", der); err != nil || !strings.Contains(stdout, certs.SerialHex(leaf)) {
		t.Errorf("cert show of a DER file: got %v\n%s; want the serial %s", err, stdout, certs.SerialHex(leaf))
	}
}

// TestCertShowServer reads the chain of a real TLS server that the client
// does not trust.
func TestCertShowServer(t *testing.T) {
	ca, err := certs.OpenCA(certs.CAOptions{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(certs.LeafOptions{Hosts: []string{"flowable.test"}})
	if err != nil {
		t.Fatal(err)
	}
	sni := make(chan string, 1)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			sni <- hello.ServerName
			return kp.Certificate, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.(*tls.Conn).Handshake()
		c.Close()
	}()
	t.Cleanup(func() { ln.Close(); <-done })

	stdout, _, err := runCertTest(t, "show", ln.Addr().String(), "--server-name", "flowable.test", "--timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	if got := <-sni; got != "flowable.test" {
		t.Errorf("SNI sent: got %q; want flowable.test", got)
	}
	for _, want := range []string{"Connected to " + ln.Addr().String(), "not verified", "Serial:      " + certs.SerialHex(kp.Certificate.Leaf), "Issuer:      " + ca.Certificate().Subject.String()} {
		if !strings.Contains(stdout, want) {
			t.Errorf("cert show HOST:PORT: missing %q in\n%s", want, stdout)
		}
	}
}

func TestCertCA(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	first, stderr, err := runCertTest(t, "ca", "--state-dir", state)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "created a local CA") {
		t.Errorf("stderr on creation: got %q; want a notice that a CA was created", stderr)
	}
	block, rest := pem.Decode([]byte(first))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("cert ca: got %q; want exactly one PEM certificate", first)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA {
		t.Error("cert ca printed a certificate that is not a CA")
	}
	second, stderr, err := runCertTest(t, "ca", "--state-dir", state)
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Error("second cert ca: got another CA; want the existing one")
	}
	if stderr != "" {
		t.Errorf("stderr for an existing CA: got %q; want nothing", stderr)
	}
	if fi, err := os.Stat(filepath.Join(state, certs.CAKeyFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode: got %v, %v; want 0600", fi, err)
	}
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
