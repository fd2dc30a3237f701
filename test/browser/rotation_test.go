package browser

import (
	"net"
	"testing"
	"time"

	"github.com/flowgate/flowgate/agent"
	"github.com/flowgate/flowgate/certs"
	"github.com/flowgate/flowgate/test/harness"
)

// rotationConfig makes the built-in issuer rotate within the test: a leaf
// lives 30 s and is renewed 15 s (up to 16.5 s with jitter) before it
// expires. Without session tickets and with a short idle timeout, the
// browser's reload after the rotation needs a new, full TLS handshake, so it
// must verify the new leaf rather than reuse the old connection or session.
const rotationConfig = `
server_names: [localhost]
issuer:
  leaf_lifetime: 30s
  renew_before: 15s
tls:
  session_tickets: false
http:
  idle_timeout: 2s
`

// testLeafRotation checks that a browser which trusts flowgate's CA once
// keeps loading the page without a certificate error after the leaf
// rotates, and that it really was served the new leaf.
func testLeafRotation(t *testing.T, certutil string) {
	stub := harness.StartStub(t, "node-r")
	fg := harness.StartFlowgate(t, harness.Options{Config: rotationConfig, Upstreams: []string{stub.Addr}})
	if fg.CAPEM == nil {
		t.Fatal("admin served no CA certificate; want the built-in issuer's CA")
	}
	caCN := caSubjectCN(t, fg.CAPEM)
	first := issuerCert(t, fg.Status())
	if left := time.Until(first.NotAfter); left > time.Minute {
		t.Fatalf("leaf %s is valid for %v more; want at most 30 s (issuer.leaf_lifetime)", first.Serial, left.Round(time.Second))
	}

	ctx := startBrowser(t, browserOptions{TrustCA: fg.CAPEM, Certutil: certutil})
	_, port, _ := net.SplitHostPort(fg.HTTPS)
	pageURL := "https://localhost:" + port + "/"
	resp, _, err := navigate(ctx, pageURL)
	if err != nil {
		t.Fatalf("navigating to %s before the rotation: %v", pageURL, err)
	}
	checkSecurePage(t, resp, pageURL, caCN)
	if got, want := int64(resp.SecurityDetails.ValidTo), first.NotAfter.Unix(); got != want {
		t.Fatalf("certificate valid to %v before the rotation; want the first leaf's %v", time.Unix(got, 0).UTC(), first.NotAfter)
	}
	st, err := waitEcho(ctx)
	checkEcho(t, st, err, stub.Name)

	// The renewal is due at most 16.5 s after issuance; the old leaf expires
	// at 30 s. Waiting past its expiry would mean no rotation happened.
	rotated := waitRotation(t, fg, first, time.Until(first.NotAfter)+5*time.Second)
	t.Logf("leaf rotated: serial %s (valid to %v) -> %s (valid to %v)", first.Serial, first.NotAfter, rotated.Serial, rotated.NotAfter)

	resp, _, err = reload(ctx)
	if err != nil {
		t.Fatalf("reloading %s after the rotation: got %v; want the page without a certificate error", pageURL, err)
	}
	checkSecurePage(t, resp, pageURL, caCN)
	// The leaf the browser verified is the new one (or a later one, if the
	// issuer rotated again meanwhile), never the first.
	if got := int64(resp.SecurityDetails.ValidTo); got < rotated.NotAfter.Unix() {
		t.Errorf("certificate valid to %v after the rotation; want the new leaf's %v or later (the first leaf's was %v)", time.Unix(got, 0).UTC(), rotated.NotAfter, first.NotAfter)
	}
	st, err = waitEcho(ctx)
	checkEcho(t, st, err, stub.Name)
}

// issuerCert returns the built-in issuer's certificate from a status.
func issuerCert(t *testing.T, st agent.Status) certs.Info {
	t.Helper()
	for _, c := range st.Certificates {
		if c.Name == "issuer" {
			return c
		}
	}
	t.Fatalf("status certificates: got %+v; want one named \"issuer\"", st.Certificates)
	return certs.Info{}
}

// waitRotation polls the admin status until the issuer serves a leaf other
// than old, for at most d.
func waitRotation(t *testing.T, fg *harness.Flowgate, old certs.Info, d time.Duration) certs.Info {
	t.Helper()
	ctx := waitCtx(t, d)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if c := issuerCert(t, fg.Status()); c.Serial != old.Serial {
			return c
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the issuer's serial is still %s after %v; want a rotated leaf (renew_before 15s of a 30s lifetime)", old.Serial, d)
		case <-tick.C:
		}
	}
}
