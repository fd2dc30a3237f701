package certe2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestCertIssueAndShow issues a certificate with `flowgate cert issue`,
// checks it with OpenSSL, serves it with `flowgate run`, and reads it back
// from the listener with `flowgate cert show`.
func TestCertIssueAndShow(t *testing.T) {
	t.Parallel()
	openssl := harness.RequireTool(t, "openssl")
	out, stateDir := t.TempDir(), t.TempDir()
	issued := time.Now()
	res := harness.RunFlowgate(t, nil, "cert", "issue", "--out", out, "--host", "example.test", "--host", "127.0.0.1",
		"--days", "365", "--state-dir", stateDir)
	if res.Code != 0 {
		t.Fatalf("flowgate cert issue: got exit code %d; want 0\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	certPath, keyPath, caPath := filepath.Join(out, "cert.pem"), filepath.Join(out, "key.pem"), filepath.Join(out, "ca.pem")
	leaf := readCert(t, certPath)
	serial := leaf.SerialNumber.Text(16)
	if want := "serial " + serial; !strings.Contains(res.Stdout, want) {
		t.Errorf("flowgate cert issue output: got %q; want it to name %q", res.Stdout, want)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: got %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	run := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	if got := run("verify", "-CAfile", caPath, certPath); !strings.Contains(got, certPath+": OK") {
		t.Errorf("openssl verify -CAfile ca.pem cert.pem: got %q; want OK", got)
	}
	text := run("x509", "-noout", "-text", "-in", certPath)
	for _, want := range []string{
		"DNS:example.test",
		"IP Address:127.0.0.1",
		"id-ecPublicKey",
		"NIST CURVE: P-256",
		"TLS Web Server Authentication",
		"Not Before: " + leaf.NotBefore.UTC().Format("Jan _2 15:04:05 2006 GMT"),
		"Not After : " + leaf.NotAfter.UTC().Format("Jan _2 15:04:05 2006 GMT"),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text: missing %q in\n%s", want, text)
		}
	}
	// 365 days from now, give or take the seconds the command took.
	if d := leaf.NotAfter.Sub(issued) - 365*24*time.Hour; d < -time.Minute || d > time.Minute {
		t.Errorf("NotAfter: got %s; want 365 days after %s", leaf.NotAfter.UTC(), issued.UTC())
	}

	caPool := x509.NewCertPool()
	caPool.AddCert(readCert(t, caPath))
	fg := harness.StartFlowgate(t, harness.Options{
		Args:    []string{"--cert-file", certPath, "--key-file", keyPath},
		RootCAs: caPool,
	})
	before := daysLeft(leaf, time.Now())
	show := harness.RunFlowgate(t, nil, "cert", "show", fg.HTTPS)
	after := daysLeft(leaf, time.Now())
	if show.Code != 0 {
		t.Fatalf("flowgate cert show %s: got exit code %d; want 0\nstdout:\n%s\nstderr:\n%s", fg.HTTPS, show.Code, show.Stdout, show.Stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s*Subject:\s+` + regexp.QuoteMeta(leaf.Subject.String()) + `$`),
		regexp.MustCompile(`(?m)^\s*SANs:\s+DNS:example\.test, IP:127\.0\.0\.1$`),
		regexp.MustCompile(`(?m)^\s*Serial:\s+` + serial + `$`),
		regexp.MustCompile(`(?m)^\s*Key type:\s+ECDSA P-256$`),
		regexp.MustCompile(fmt.Sprintf(`(?m)^\s*Days left:\s+(%s|%s)$`, before, after)),
	} {
		if !want.MatchString(show.Stdout) {
			t.Errorf("flowgate cert show %s: no line matching %s in\n%s", fg.HTTPS, want, show.Stdout)
		}
	}
	if !t.Failed() {
		harness.Figure(t, "flowgate cert issue: serial %s for example.test and 127.0.0.1, 365 days, verified by openssl; flowgate cert show read it back from the listener (%s days left)", serial, after)
	}
}

// readCert parses the first certificate of a PEM file.
func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// daysLeft is the number of whole days c stays valid after now.
func daysLeft(c *x509.Certificate, now time.Time) string {
	return strconv.Itoa(int(c.NotAfter.Sub(now) / (24 * time.Hour)))
}
