package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestGracefulShutdown sends SIGTERM while 50 slow requests are in flight,
// half over HTTP/2 and half over HTTP/1.1: all 50 must complete, new
// connections must be refused, and flowgate must exit 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{a.Addr, b.Addr}})
	h1TLS := fg.TLS.Clone()
	h1TLS.NextProtos = []string{"http/1.1"}
	h1 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     h1TLS,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		MaxIdleConnsPerHost: 50,
	}}
	t.Cleanup(h1.CloseIdleConnections)

	const n = 50
	results := make([]result, n)
	protos := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		c := fg.Client
		if i%2 == 1 {
			c = h1
		}
		wg.Go(func() {
			resp, err := c.Get(fg.URL("/slow?d=2s"))
			if err != nil {
				results[i] = result{err: err}
				return
			}
			resp.Body.Close()
			results[i] = result{status: resp.StatusCode, node: resp.Header.Get("X-Node")}
			protos[i] = resp.Proto
		})
	}
	// Wait until every request has reached a node.
	inFlight := func() int64 {
		var sum int64
		for _, u := range fg.Status().Upstreams {
			sum += u.InFlight
		}
		return sum
	}
	if !harness.Poll(10*time.Second, func() bool { return inFlight() == n }) {
		t.Fatalf("in flight before SIGTERM: got %d; want %d", inFlight(), n)
	}
	sent := time.Now()
	if err := fg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Once flowgate has stopped accepting, a new connection is refused.
	refused := harness.Poll(5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", fg.HTTPS, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if !refused {
		t.Errorf("new connections still accepted 5 s after SIGTERM")
	}
	wg.Wait()
	code, err := fg.Wait(20 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("exit after SIGTERM: got %d, %v; want 0", code, err)
	}
	t.Logf("SIGTERM with %d requests in flight: all answered and exited %v after the signal", n, time.Since(sent).Round(time.Millisecond))
	perProto := make(map[string]int)
	for i, r := range results {
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("request %d (%s): got status %d, %v; want 200", i, protos[i], r.status, r.err)
		}
		perProto[protos[i]]++
	}
	if perProto["HTTP/2.0"] != n/2 || perProto["HTTP/1.1"] != n/2 {
		t.Errorf("protocols: got %v; want %d each of HTTP/2.0 and HTTP/1.1", perProto, n/2)
	}
}
