package certe2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestSIGHUPSwapsCertificateFiles starts flowgate with a config naming
// certificate A, rewrites the config to name certificate B in other files
// and sends SIGHUP, while clients keep opening new connections and one
// client keeps a connection alive: nothing fails, handshakes after the
// reload get B, and the kept-alive connection goes on working.
func TestSIGHUPSwapsCertificateFiles(t *testing.T) {
	t.Parallel()
	ca := harness.NewTestCA(t)
	filesA, filesB := newCertFiles(t.TempDir()), newCertFiles(t.TempDir())
	a, b := newPair(t, ca, 0xaaa), newPair(t, ca, 0xbbb)
	filesA.replace(t, a)
	filesB.replace(t, b)
	config := func(f certFiles) string {
		return fmt.Sprintf("tls:\n  certificates:\n    - cert_file: %q\n      key_file: %q\n", f.cert, f.key)
	}
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{Config: config(filesA), Upstreams: []string{stub.Addr}, RootCAs: ca.Pool})

	// One client on a single kept-alive connection, the way a browser
	// holds its connection across a reload.
	tc := fg.TLS.Clone()
	tc.ServerName = "localhost"
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	keepAlive := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	keepAliveGet := func() (reused bool, err error) {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, fg.URL("/headers"), nil)
		if err != nil {
			return false, err
		}
		resp, err := keepAlive.Do(req)
		if err != nil {
			return reused, err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return reused, err
		}
		if resp.StatusCode != http.StatusOK {
			return reused, fmt.Errorf("got status %d; want 200", resp.StatusCode)
		}
		return reused, nil
	}
	if _, err := keepAliveGet(); err != nil {
		t.Fatalf("kept-alive client, first request: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg                sync.WaitGroup
		res               loadResult
		keepAliveErrs     []error
		keepAliveRequests int
		keepAliveNew      int
	)
	wg.Go(func() {
		res = runLoad(ctx, loadOptions{addr: fg.HTTPS, serverName: "localhost", roots: ca.Pool, workers: 2, rate: 100, requestEvery: 2, path: "/headers"})
	})
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			reused, err := keepAliveGet()
			keepAliveRequests++
			if err != nil {
				keepAliveErrs = append(keepAliveErrs, err)
			} else if !reused {
				keepAliveNew++
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })

	time.Sleep(time.Second)
	fg.WriteConfig(config(filesB))
	if err := fg.Reload(); err != nil {
		t.Fatalf("SIGHUP with certificate B: %v", err)
	}
	reloaded := time.Now()
	// The reload is complete when flowgate says so: the very next handshake
	// gets B.
	h, _ := dialOnce(loadOptions{addr: fg.HTTPS, serverName: "localhost", roots: ca.Pool}, false)
	if h.err != nil || h.serial != b.serial {
		t.Errorf("first new TLS connection after the reload: got serial %q, %v; want %s", h.serial, h.err, b.serial)
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()

	for i, h := range res.failures() {
		if i == 10 {
			t.Errorf("… and more failures")
			break
		}
		t.Errorf("connection at %s: %v", h.start.Format("15:04:05.000"), h.err)
	}
	var beforeA, afterB int
	for _, h := range res.handshakes {
		switch {
		case h.err != nil:
		case h.serial != a.serial && h.serial != b.serial:
			t.Errorf("handshake at %s: got serial %s; want %s or %s", h.end.Format("15:04:05.000"), h.serial, a.serial, b.serial)
		case h.start.After(reloaded) && h.serial != b.serial:
			t.Errorf("handshake started at %s, after the reload: got serial %s; want %s", h.start.Format("15:04:05.000"), h.serial, b.serial)
		case h.serial == a.serial:
			beforeA++
		default:
			afterB++
		}
	}
	if beforeA == 0 || afterB == 0 {
		t.Errorf("handshakes: got %d with A and %d with B; want some of each", beforeA, afterB)
	}
	for i, err := range keepAliveErrs {
		if i == 10 {
			break
		}
		t.Errorf("kept-alive client: %v", err)
	}
	if keepAliveNew != 0 {
		t.Errorf("kept-alive client: %d of %d requests needed a new connection; want the first connection kept across the reload", keepAliveNew, keepAliveRequests)
	}
	if st := fg.Status(); len(st.Certificates) != 1 || st.Certificates[0].Name != filesB.cert || st.Certificates[0].Serial != b.serial {
		t.Errorf("/status certificates: got %+v; want %s serving %s", st.Certificates, filesB.cert, b.serial)
	}
	// The replaced certificate's series are gone, so an expiry alert cannot
	// fire for a certificate that is no longer served.
	_, page := fg.AdminGet("/metrics")
	if strings.Contains(page, `name="`+filesA.cert+`"`) {
		t.Errorf("/metrics still has series for the replaced certificate %s", filesA.cert)
	}
	if notAfter, err := harness.MetricSum(page, "flowgate_certificate_not_after_timestamp_seconds", `name="`+filesB.cert+`"`); err != nil {
		t.Errorf("/metrics: %v", err)
	} else if notAfter == 0 {
		t.Errorf("/metrics has no flowgate_certificate_not_after_timestamp_seconds for %s", filesB.cert)
	}
	harness.Figure(t, "SIGHUP swapping certificate files: %d new TLS connections (%d with A, then %d with B), %d failed; %d requests on one kept-alive connection across the reload, %d failed",
		len(res.handshakes), beforeA, afterB, len(res.failures()), keepAliveRequests, len(keepAliveErrs))
}
