package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowgate/flowgate/discovery"
)

// rawUpstream is a keep-alive HTTP/1.1 upstream that answers every request
// with the same bytes and allocates next to nothing, so that allocation
// counts measure the proxy.
func rawUpstream(t testing.TB, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
		itoa(len(body)) + "\r\n\r\n" + body)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Read one request head, lines up to the empty one,
					// and skip its body.
					length := 0
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						line = bytes.TrimRight(line, "\r\n")
						if len(line) == 0 {
							break
						}
						if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
							length, _ = strconv.Atoi(string(v))
						}
					}
					if _, err := br.Discard(length); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its header map,
// reused across requests like the server's.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) reset()                      { clear(w.h) }

// proxyAllocs measures the allocations of one proxied GET through h.
func proxyAllocs(t testing.TB, h http.Handler) float64 {
	req := httptest.NewRequest(http.MethodGet, "https://flowgate.test/bytes", nil)
	req.RemoteAddr = "192.0.2.10:5555"
	req.Header.Set("User-Agent", "alloc-test")
	w := &discardWriter{h: http.Header{}}
	serve := func() {
		w.reset()
		h.ServeHTTP(w, req)
	}
	for range 10 { // warm the connection pool and the metrics caches
		serve()
	}
	return testing.AllocsPerRun(200, serve)
}

// TestProxyAllocationsOverReverseProxy bounds what flowgate allocates per
// proxied GET against a bare httputil.ReverseProxy over http.Transport,
// measured in the same process against the same upstream. flowgate adds its
// own request handling (state, recorder, forwarding headers, body tracking,
// metrics) but carries bodyless requests on its own HTTP/1.1 transport
// (h1transport.go), which allocates far less than http.Transport: the
// total must stay well below the bare proxy's.
func TestProxyAllocationsOverReverseProxy(t *testing.T) {
	addr := rawUpstream(t, strings.Repeat("x", 1024))

	target, _ := url.Parse("http://" + addr)
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
	}
	base := proxyAllocs(t, bare)

	p := New(Options{Metrics: NewMetrics(prometheus.NewRegistry())})
	defer p.Close()
	p.SetUpstreams([]discovery.Upstream{{Addr: addr, Weight: 1}})
	got := proxyAllocs(t, p)

	const saving = 12 // 20 when written: 34 against 54
	t.Logf("allocations per request: httputil.ReverseProxy %.0f, flowgate %.0f", base, got)
	if got > base-saving {
		t.Errorf("flowgate allocates %.0f per request against a bare ReverseProxy's %.0f; want at least %d fewer", got, base, saving)
	}
}

func BenchmarkProxyServeHTTP(b *testing.B) {
	addr := rawUpstream(b, strings.Repeat("x", 1024))
	p := New(Options{Metrics: NewMetrics(prometheus.NewRegistry())})
	defer p.Close()
	p.SetUpstreams([]discovery.Upstream{{Addr: addr, Weight: 1}})
	req := httptest.NewRequest(http.MethodGet, "https://flowgate.test/bytes", nil)
	req.RemoteAddr = "192.0.2.10:5555"
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		p.ServeHTTP(w, req)
	}
}

// A keep-alive round trip into a reused responseBuf allocates only the
// response head's text.
func TestH1RoundTripAllocations(t *testing.T) {
	addr := rawUpstream(t, "hello")
	tr := newH1Transport(addr, nil, TransportOptions{ResponseHeaderTimeout: time.Minute, IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 4}, time.Now)
	defer tr.CloseIdleConnections()
	// The fast path's requests carry their connection's abort watch.
	req, err := http.NewRequestWithContext(withAbortWatch(t.Context()), http.MethodGet, "http://"+addr+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rb responseBuf
	buf := make([]byte, 64)
	body := &bufferedBody{b: []byte(`{"action":"complete"}`)}
	roundTrip := func() {
		resp, err := tr.roundTrip(req, &rb, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := io.ReadFull(resp.Body, buf[:5]); n != 5 || string(buf[:5]) != "hello" {
			t.Fatalf("body %q", buf[:n])
		}
		if n, err := resp.Body.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("after the body: %d, %v", n, err)
		}
		resp.Body.Close()
		rb.release()
	}
	roundTrip() // dials and fills the pool
	// The least over many runs: under the race detector, sync.Pool drops
	// items at random, and refilling the transport's buffer pools costs
	// allocations that are not the round trip's.
	allocs := testing.AllocsPerRun(1, roundTrip)
	for range 50 {
		allocs = min(allocs, testing.AllocsPerRun(1, roundTrip))
	}
	if allocs > 1 {
		t.Errorf("a keep-alive round trip costs %.0f allocations; want 1", allocs)
	}
	// The same with a body read whole, as the fast path sends a POST.
	req.Method, req.Body, req.ContentLength = http.MethodPost, body, int64(len(body.b))
	roundTrip()
	allocs = testing.AllocsPerRun(1, roundTrip)
	for range 50 {
		allocs = min(allocs, testing.AllocsPerRun(1, roundTrip))
	}
	if allocs > 1 {
		t.Errorf("a keep-alive round trip with a body costs %.0f allocations; want 1", allocs)
	}
	if got := tr.idleConns(); got != 1 {
		t.Errorf("idle connections after the round trips: %d; want 1", got)
	}
}
