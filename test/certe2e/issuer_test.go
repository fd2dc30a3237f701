package certe2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/certs"
	"github.com/flowgate/flowgate/test/harness"
)

// TestIssuerRotation runs the built-in issuer with 20 s leaves renewed 10 s
// before expiry while clients open new TLS connections that verify the
// chain against the CA served on the admin listener, for 60 s: the leaf
// rotates at least three times, no handshake fails, every leaf verifies and
// is served with time to spare. After SIGTERM and a start with the same
// state directory, the CA is the same and the saved leaf, not yet due, is
// served again.
func TestIssuerRotation(t *testing.T) {
	t.Parallel()
	const (
		runFor       = 60 * time.Second
		renewBefore  = 10 * time.Second
		minRotations = 3
		// A leaf is renewed 10-11 s before NotAfter; one served with less
		// than this left means the rotation came late.
		minRemaining = 5 * time.Second
	)
	config := "issuer:\n  leaf_lifetime: 20s\n  renew_before: 10s\n"
	stateDir := t.TempDir()
	args := []string{"--state-dir", stateDir}
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{Args: args, Upstreams: []string{stub.Addr}, Config: config})
	caPEM, roots := fetchCA(t, fg)
	rotationsBefore := fg.Metric(t, certs.MetricIssuerRotations, `result="success"`)

	ctx, cancel := context.WithTimeout(t.Context(), runFor)
	defer cancel()
	res := runLoad(ctx, loadOptions{
		addr:         fg.HTTPS,
		serverName:   "localhost",
		roots:        roots,
		workers:      2,
		rate:         50,
		requestEvery: 20,
		path:         "/headers",
	})

	failed := res.failures()
	for i, h := range failed {
		if i == 10 {
			t.Errorf("… and %d more failures", len(failed)-10)
			break
		}
		t.Errorf("connection at %s: %v", h.start.Format("15:04:05.000"), h.err)
	}
	// Order the serials by when they were first served; no handshake may
	// get an older one after a newer one was served.
	seen := res.firstSeen()
	generation := make(map[string]int)
	var order []string
	for _, h := range res.handshakes {
		if _, ok := generation[h.serial]; h.err == nil && !ok {
			generation[h.serial] = len(order)
			order = append(order, h.serial)
		}
	}
	for _, r := range regressions(res.handshakes, generation) {
		t.Error(r)
	}
	minLeft := time.Duration(1<<63 - 1)
	for _, h := range res.handshakes {
		if h.err == nil {
			minLeft = min(minLeft, h.notAfter.Sub(h.end))
		}
	}
	if minLeft < minRemaining {
		t.Errorf("least validity left on a served leaf: got %v; want at least %v (renewal is %v before expiry)", minLeft, minRemaining, renewBefore)
	}
	for _, serial := range order {
		leaf := res.leaves[serial]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost", CurrentTime: seen[serial]}); err != nil {
			t.Errorf("leaf %s against the CA from the admin listener: %v", serial, err)
		}
		if lifetime := leaf.NotAfter.Sub(seen[serial]); lifetime > 20*time.Second {
			t.Errorf("leaf %s: valid for %v after it was first served; want at most the 20s leaf lifetime", serial, lifetime.Round(time.Millisecond))
		}
	}
	var intervals []time.Duration
	for i := 1; i < len(order); i++ {
		intervals = append(intervals, seen[order[i]].Sub(seen[order[i-1]]))
	}
	rotations := fg.Metric(t, certs.MetricIssuerRotations, `result="success"`) - rotationsBefore
	harness.Figure(t, "issuer rotation (leaf_lifetime 20s, renew_before 10s): %d rotations in %v (%d distinct leaves served, %v between them at the median), %d verified new TLS connections (%.0f/s), %d failed, least validity left on a served leaf %v",
		int(rotations), res.elapsed.Round(time.Second), len(order), percentile(intervals, 50).Round(100*time.Millisecond),
		len(res.handshakes), res.rate(), len(failed), minLeft.Round(100*time.Millisecond))
	if len(order) < minRotations+1 {
		t.Errorf("distinct leaves served: got %d %q; want at least %d", len(order), order, minRotations+1)
	}
	if rotations < minRotations {
		t.Errorf("%s{result=\"success\"} increase: got %v; want at least %d", certs.MetricIssuerRotations, rotations, minRotations)
	}
	if t.Failed() {
		return
	}

	// Stop right after a rotation, so the saved leaf is far from due when
	// flowgate starts again.
	mark := fg.Mark()
	line, err := fg.WaitLog(mark, "issued a new certificate", 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h, leaf := dialOnce(loadOptions{addr: fg.HTTPS, serverName: "localhost", roots: roots}, false)
	if h.err != nil {
		t.Fatalf("new TLS connection after the rotation: %v", h.err)
	}
	if !strings.Contains(line, "serial="+h.serial) {
		t.Fatalf("served serial %s after the rotation logged %q; want the new one", h.serial, line)
	}
	stopped := time.Now()
	if err := fg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := fg.Wait(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("flowgate after SIGTERM: got exit code %d, %v; want 0", code, err)
	}

	fg2 := harness.StartFlowgate(t, harness.Options{Args: args, Upstreams: []string{stub.Addr}, Config: config})
	started := time.Now()
	caPEM2, roots2 := fetchCA(t, fg2)
	if !bytes.Equal(caPEM2, caPEM) {
		t.Errorf("CA after the restart with the same state directory: got\n%s\nwant the same as before\n%s", caPEM2, caPEM)
	}
	h2, _ := dialOnce(loadOptions{addr: fg2.HTTPS, serverName: "localhost", roots: roots2}, false)
	if h2.err != nil {
		t.Fatalf("new TLS connection after the restart (verified against the CA): %v", h2.err)
	}
	// The saved leaf is due at the earliest 1.1 × renew_before before its
	// NotAfter; flowgate decided whether to reuse it before it served.
	if due := leaf.NotAfter.Add(-renewBefore * 11 / 10); !started.Before(due) {
		t.Fatalf("the restart took until %s, past the saved leaf's earliest renewal point %s: cannot check its reuse", started.Format("15:04:05.000"), due.Format("15:04:05.000"))
	}
	if h2.serial != h.serial {
		t.Errorf("leaf after the restart: got serial %s; want the saved, still valid %s reused", h2.serial, h.serial)
	}
	if _, err := fg2.WaitLog(0, "reusing the saved certificate", time.Second); err != nil {
		t.Errorf("restart log: %v", err)
	}
	harness.Figure(t, "issuer restart with the same state directory: same CA, leaf %s reused (%v from SIGTERM to serving)",
		h2.serial, started.Sub(stopped).Round(time.Millisecond))
}

// fetchCA fetches the built-in CA from the admin listener and returns it as
// PEM and as a pool.
func fetchCA(t testing.TB, fg *harness.Flowgate) ([]byte, *x509.CertPool) {
	t.Helper()
	code, body := fg.AdminGet(certs.CACertificatePath)
	if code != http.StatusOK {
		t.Fatalf("admin %s: got status %d; want 200\n%s", certs.CACertificatePath, code, body)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(body)) {
		t.Fatalf("admin %s: not a PEM certificate:\n%s", certs.CACertificatePath, body)
	}
	return []byte(body), pool
}
