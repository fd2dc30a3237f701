package fault

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestCertificateFileGarbage replaces the served certificate and key files
// with broken contents in the ways writers break them: garbage renamed
// over the file, a file truncated in place, a key that does not match. Each
// time the last good certificate keeps serving (same serial on a fresh
// handshake) and the failure shows in /metrics and /status; a good file
// afterwards is picked up.
func TestCertificateFileGarbage(t *testing.T) {
	t.Parallel()
	ca := harness.NewTestCA(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certPEM, keyPEM := ca.Leaf(t, 0x1001, "localhost", "127.0.0.1")
	harness.ReplaceFile(t, certPath, certPEM)
	harness.ReplaceFile(t, keyPath, keyPEM)
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Args:      []string{"--cert-file", certPath, "--key-file", keyPath},
		Upstreams: []string{stub.Addr},
		RootCAs:   ca.Pool,
		// The periodic re-check is only the safety net; events come first.
		Config: "tls:\n  reload_interval: 2s\n",
	})

	serving := "1001"
	checkServing := func(t *testing.T, want string) {
		t.Helper()
		got, err := servedSerial(fg.HTTPS, ca.Pool)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if got != want {
			t.Errorf("served serial: got %s; want %s", got, want)
		}
	}
	checkServing(t, serving)

	_, otherKey := ca.Leaf(t, 0x9999, "localhost", "127.0.0.1")
	good2, good2Key := ca.Leaf(t, 0x1002, "localhost", "127.0.0.1")
	breakages := []struct {
		name  string
		apply func(t *testing.T)
	}{
		{"garbage renamed over the certificate", func(t *testing.T) {
			harness.ReplaceFile(t, certPath, []byte("this is not a certificate\n"))
		}},
		{"certificate truncated in place", func(t *testing.T) {
			if err := os.WriteFile(certPath, certPEM[:len(certPEM)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty certificate", func(t *testing.T) {
			if err := os.Truncate(certPath, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"key of another certificate", func(t *testing.T) {
			harness.ReplaceFile(t, certPath, certPEM)
			harness.ReplaceFile(t, keyPath, otherKey)
		}},
		{"garbage key", func(t *testing.T) {
			harness.ReplaceFile(t, keyPath, []byte("-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n"))
		}},
	}
	for _, b := range breakages {
		t.Run(b.name, func(t *testing.T) {
			before := fg.Metric(t, "flowgate_certificate_reloads_total", `result="failure"`)
			start := time.Now()
			b.apply(t)
			if !harness.Poll(10*time.Second, func() bool {
				return fg.Metric(t, "flowgate_certificate_reloads_total", `result="failure"`) > before
			}) {
				t.Fatalf("flowgate_certificate_reloads_total{result=\"failure\"} stayed at %v; want it to count the broken file", before)
			}
			detected := time.Since(start)
			checkServing(t, serving)
			st := fg.Status()
			if len(st.Certificates) != 1 || st.Certificates[0].LastError == "" {
				t.Errorf("/status certificates: got %+v; want one with last_error set", st.Certificates)
			} else {
				harness.Figure(t, "certificate file broken (%s): detected in %v, still serving serial %s; /status last_error %q",
					b.name, detected.Round(time.Millisecond), serving, st.Certificates[0].LastError)
			}
			// Restore the good pair before the next breakage, so each one
			// is a change from a valid state.
			harness.ReplaceFile(t, certPath, certPEM)
			harness.ReplaceFile(t, keyPath, keyPEM)
			if !harness.Poll(10*time.Second, func() bool {
				st := fg.Status()
				return len(st.Certificates) == 1 && st.Certificates[0].LastError == ""
			}) {
				t.Errorf("/status last_error after restoring the files: got %q; want it cleared", fg.Status().Certificates[0].LastError)
			}
		})
	}

	t.Run("a good certificate afterwards", func(t *testing.T) {
		harness.ReplaceFile(t, keyPath, good2Key)
		harness.ReplaceFile(t, certPath, good2)
		start := time.Now()
		if !harness.Poll(10*time.Second, func() bool {
			got, err := servedSerial(fg.HTTPS, ca.Pool)
			return err == nil && got == "1002"
		}) {
			t.Fatalf("the new certificate was not served within 10s")
		}
		harness.Figure(t, "certificate file replaced with a good one after failures: served within %v", time.Since(start).Round(time.Millisecond))
		if st := fg.Status(); st.Certificates[0].LastError != "" || !strings.EqualFold(st.Certificates[0].Serial, "1002") {
			t.Errorf("/status: got serial %s, last_error %q; want 1002 and none", st.Certificates[0].Serial, st.Certificates[0].LastError)
		}
	})
}
