package fault

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestClientThatStopsReading: clients ask for a 1 GiB download and read
// none of it (a slow-read attack), over HTTP/1.1 (the fast path) and
// HTTP/2. With http.send_timeout 1s flowgate cuts each once a write has
// waited that long, and its upstream request with it. Before, each held
// its connection, a goroutine and a node's connection, streaming, for as
// long as the client kept its socket open.
func TestClientThatStopsReading(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{stub.Addr},
		Config:    "http:\n  send_timeout: 1s\n",
	})
	const target = "/bytes?n=1073741824"
	start := time.Now()
	for range 3 {
		cfg := fg.TLS.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		c, err := tls.Dial("tcp", fg.HTTPS, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fg.TLS.Clone()
	cfg.NextProtos = []string{"h2"}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	for range 3 {
		resp, err := (&http.Client{Transport: tr}).Get("https://" + fg.HTTPS + target)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("got %s; want HTTP/2", resp.Proto)
		}
		defer resp.Body.Close() // never read
	}
	inFlight := func() int64 { return fg.Status().Upstreams[0].InFlight }
	var peak int64
	for time.Since(start) < 15*time.Second {
		n := inFlight()
		peak = max(peak, n)
		if peak == 6 && n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if peak != 6 || inFlight() != 0 {
		t.Fatalf("upstream requests in flight: peak %d, now %d after %v; want 6, then 0 once send_timeout (1s) passed",
			peak, inFlight(), time.Since(start).Round(time.Millisecond))
	}
	t.Logf("FIGURE: 6 clients that read nothing of a 1 GiB download (3 HTTP/1.1, 3 HTTP/2), send_timeout 1s: all cut, upstream requests released %s after they started",
		time.Since(start).Round(10*time.Millisecond))
	if resp, _ := fg.Get("/headers"); resp.StatusCode != http.StatusOK {
		t.Errorf("a normal request afterwards: got %d; want 200", resp.StatusCode)
	}
}
