package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowgate/flowgate/discovery"
)

// fakeClock is an injected clock for passive-health windows.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// backend is a real upstream on loopback that answers with its name and
// remembers what it was sent.
type backend struct {
	name string
	srv  *httptest.Server
	tls  bool
	hits atomic.Int64

	mu      sync.Mutex
	headers []http.Header
	bodies  []string
}

// newBackend starts a backend. handler, when not nil, answers instead of the
// default "name" body (after the request is recorded).
func newBackend(t *testing.T, name string, handler http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(b.recording(handler))
	t.Cleanup(b.srv.Close)
	return b
}

// newTLSBackend is newBackend over HTTPS (httptestTLS); its upstream is
// marked TLS.
func newTLSBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name, tls: true}
	b.srv = httptestTLS(t, b.recording(nil))
	return b
}

// recording records each request, then answers it with handler or, when
// handler is nil, with the backend's name.
func (b *backend) recording(handler http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.hits.Add(1)
		b.mu.Lock()
		b.headers = append(b.headers, r.Header.Clone())
		b.bodies = append(b.bodies, string(body))
		b.mu.Unlock()
		if handler != nil {
			handler(w, r)
			return
		}
		w.Header().Set("X-Backend", b.name)
		io.WriteString(w, b.name)
	})
}

func (b *backend) upstream() discovery.Upstream {
	return discovery.Upstream{Addr: b.srv.Listener.Addr().String(), TLS: b.tls, Weight: 1}
}

func (b *backend) lastHeader() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.headers) == 0 {
		return nil
	}
	return b.headers[len(b.headers)-1]
}

// deadAddr is a loopback address nothing listens on: connecting is refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// resetBackend is an upstream that reads the request (and its body when
// readBody is set) and then resets the connection without answering.
func resetBackend(t *testing.T, readBody bool, hits *atomic.Int64) discovery.Upstream {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if readBody {
			io.ReadAll(r.Body)
		}
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST instead of FIN
		}
		c.Close()
	}))
	t.Cleanup(srv.Close)
	return discovery.Upstream{Addr: srv.Listener.Addr().String(), Weight: 1}
}

// newTestProxy creates a proxy over the given upstreams and closes it when
// the test ends.
func newTestProxy(t *testing.T, opts Options, ups ...discovery.Upstream) *Proxy {
	t.Helper()
	p := New(opts)
	t.Cleanup(p.Close)
	if len(ups) > 0 && !p.SetUpstreams(ups) {
		t.Fatal("SetUpstreams on a new proxy reported no change")
	}
	return p
}

// acceptEach listens on loopback until the test ends and hands each
// connection, one after another, to handle.
func acceptEach(t *testing.T, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			handle(c)
		}
	}()
	return ln
}

// frontProto is front for proto "HTTP/1.1", and for "HTTP/2" a TLS front
// whose client speaks HTTP/2.
func frontProto(t *testing.T, h http.Handler, proto string) (string, *http.Client) {
	t.Helper()
	if proto != "HTTP/2" {
		return front(t, h)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, srv.Client()
}

// front serves the proxy on a real loopback listener and returns its URL and
// a client with its own connection pool.
func front(t *testing.T, h http.Handler) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// frontTLS serves the proxy over real TLS on loopback.
func frontTLS(t *testing.T, h http.Handler) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	c := srv.Client()
	c.Timeout = 10 * time.Second
	return srv.URL, c
}

// tlsClientFor trusts the certificate of an httptest TLS server.
func tlsClientFor(srv *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// get does a GET and returns the status, body and headers.
func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body of %s %s: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, string(body), resp.Header
}

// testUpstreams builds n unconnected upstreams for balancer unit tests.
func testUpstreams(n int) []*upstream {
	out := make([]*upstream, n)
	for i := range out {
		out[i] = newUpstream(discovery.Upstream{Addr: fmt.Sprintf("10.0.0.%d:8090", i+1), Weight: 1}, nil, nil)
	}
	return out
}

func ones(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// noLeak fails when an error body reveals an internal address or Go error
// text.
func noLeak(t *testing.T, body string, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, "127.0.0.1", "dial tcp", "connection refused", "EOF", "net/http", "timeout awaiting", "reset by peer") {
		if s != "" && strings.Contains(body, s) {
			t.Errorf("error body %q reveals %q", body, s)
		}
	}
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// httptestTLS serves h over TLS on loopback.
func httptestTLS(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(testWriter{t}, "", 0) // handshake errors show only on failure
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// testWriter sends a server's error log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// gaugeValue reads a gauge or counter.
func gaugeValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}
