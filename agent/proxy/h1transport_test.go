package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

// scriptedUpstream is a raw HTTP/1.1 upstream on loopback: reply answers
// the n-th request (from 0) of the c-th connection (from 0) by writing to
// w, and returns false to close the connection without more.
type scriptedUpstream struct {
	addr  string
	conns atomic.Int64 // connections accepted
	reqs  atomic.Int64 // requests read
}

func newScriptedUpstream(t *testing.T, reply func(conn, n int, req *http.Request, w io.Writer) bool) *scriptedUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedUpstream{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
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
			conn := int(s.conns.Add(1) - 1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					s.reqs.Add(1)
					if !reply(conn, n, req, c) {
						return
					}
				}
			})
		}
	})
	return s
}

func (s *scriptedUpstream) upstream() discovery.Upstream {
	return discovery.Upstream{Addr: s.addr, Weight: 1}
}

func okReply(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func h1Of(t *testing.T, p *Proxy, up discovery.Upstream) *h1Transport {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.known[up.Key()]
	if u == nil || u.h1 == nil {
		t.Fatalf("upstream %s has no HTTP/1.1 transport", up.Key())
	}
	return u.h1
}

func doMethod(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, body, _ := do(t, c, req)
	return status, body
}

func TestH1KeepsConnectionsAlive(t *testing.T) {
	s := newScriptedUpstream(t, func(_, _ int, _ *http.Request, w io.Writer) bool {
		io.WriteString(w, okReply("hello"))
		return true
	})
	p := newTestProxy(t, Options{}, s.upstream())
	url, c := front(t, p)
	for i := range 50 {
		if status, body := doMethod(t, c, http.MethodGet, url+"/x"); status != 200 || body != "hello" {
			t.Fatalf("request %d: got %d %q; want 200 hello", i, status, body)
		}
	}
	if got := s.conns.Load(); got != 1 {
		t.Errorf("upstream connections for 50 sequential requests: got %d; want 1", got)
	}
	if got := h1Of(t, p, s.upstream()).idleConns(); got != 1 {
		t.Errorf("idle connections: got %d; want 1", got)
	}
}

// An upstream that closes an idle connection (keep-alive timeout, restart)
// must not cost a request, not even one that may not be repeated.
func TestH1IdleConnectionClosedByUpstream(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the liveness peek is Linux-only")
	}
	s := newScriptedUpstream(t, func(_, _ int, _ *http.Request, w io.Writer) bool {
		io.WriteString(w, okReply("one"))
		return false // every connection carries one request, then closes
	})
	p := newTestProxy(t, Options{}, s.upstream())
	url, c := front(t, p)
	for i, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPost, http.MethodGet} {
		// The upstream's FIN reaches flowgate's idle connection first.
		poll(t, func() bool { return s.reqs.Load() == int64(i) })
		time.Sleep(20 * time.Millisecond)
		if status, body := doMethod(t, c, m, url+"/x"); status != 200 || body != "one" {
			t.Fatalf("%s after the upstream closed the idle connection: got %d %q; want 200 one", m, status, body)
		}
	}
	if got := s.reqs.Load(); got != 4 {
		t.Errorf("requests the upstream read: got %d; want 4", got)
	}
}

// When the upstream closes a kept-alive connection just as a request is
// sent on it, an idempotent request goes again on a new connection; a
// DELETE, which the upstream may have acted on, is not repeated.
func TestH1ConnectionClosedAtUse(t *testing.T) {
	s := newScriptedUpstream(t, func(_, n int, _ *http.Request, w io.Writer) bool {
		if n == 0 {
			io.WriteString(w, okReply("first"))
			return true
		}
		return false // reads the second request, closes without an answer
	})
	up := s.upstream()
	p := newTestProxy(t, Options{}, up)
	url, c := front(t, p)
	h1 := h1Of(t, p, up)
	// The liveness peek cannot see a close that has not happened yet.
	prime := func() {
		t.Helper()
		if status, body := doMethod(t, c, http.MethodGet, url+"/x"); status != 200 || body != "first" {
			t.Fatalf("priming request: got %d %q", status, body)
		}
		if h1.idleConns() != 1 {
			t.Fatal("no idle connection after the priming request")
		}
	}
	prime()
	if status, body := doMethod(t, c, http.MethodGet, url+"/x"); status != 200 || body != "first" {
		t.Fatalf("GET on a connection closed at use: got %d %q; want 200 from a new connection", status, body)
	}
	conns := s.conns.Load()
	if conns != 2 {
		t.Errorf("connections after the repeated GET: got %d; want 2", conns)
	}
	prime()
	reqs := s.reqs.Load()
	if status, _ := doMethod(t, c, http.MethodDelete, url+"/x"); status != http.StatusBadGateway {
		t.Errorf("DELETE on a connection closed at use: got %d; want 502, not a repeat", status)
	}
	if got := s.reqs.Load() - reqs; got != 1 {
		t.Errorf("DELETEs the upstream read: got %d; want 1", got)
	}
}

func TestH1ClientGoneClosesConnection(t *testing.T) {
	released := make(chan struct{})
	b := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // flowgate closed the connection
		close(released)
	})
	p := newTestProxy(t, Options{}, b.upstream())
	url, c := front(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/wait", nil)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request outlived its client's deadline")
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream connection still open 5s after the client went away")
	}
	if got := h1Of(t, p, b.upstream()).idleConns(); got != 0 {
		t.Errorf("idle connections after an aborted request: got %d; want 0", got)
	}
}

func TestH1PoolBoundAndIdleTimeout(t *testing.T) {
	var inside sync.WaitGroup
	inside.Add(6)
	gate := make(chan struct{})
	var closed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside.Done()
		<-gate
		io.WriteString(w, "b")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	up := discovery.Upstream{Addr: srv.Listener.Addr().String(), Weight: 1}
	p := newTestProxy(t, Options{Transport: TransportOptions{MaxIdleConnsPerHost: 2, IdleConnTimeout: 300 * time.Millisecond}}, up)
	url, c := front(t, p)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 10
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if status, _ := doMethod(t, c, http.MethodGet, url+"/x"); status != 200 {
				t.Errorf("got %d; want 200", status)
			}
		})
	}
	inside.Wait() // six requests on six upstream connections
	close(gate)
	wg.Wait()
	h1 := h1Of(t, p, up)
	if got := h1.idleConns(); got != 2 {
		t.Errorf("idle connections after 6 concurrent requests: got %d; want 2 (MaxIdleConnsPerHost)", got)
	}
	poll(t, func() bool { return closed.Load() == 4 })
	poll(t, func() bool { return h1.idleConns() == 0 && closed.Load() == 6 })
}

func TestH1ResponseHeadTooLarge(t *testing.T) {
	s := newScriptedUpstream(t, func(_, _ int, _ *http.Request, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\n")
		line := "X-Big: " + strings.Repeat("a", 1000) + "\r\n"
		for range 2 * maxResponseHeaderBytes / len(line) {
			if _, err := io.WriteString(w, line); err != nil {
				return false
			}
		}
		io.WriteString(w, "Content-Length: 0\r\n\r\n")
		return false
	})
	p := newTestProxy(t, Options{}, s.upstream())
	url, c := front(t, p)
	if status, _ := doMethod(t, c, http.MethodGet, url+"/x"); status != http.StatusBadGateway {
		t.Errorf("2 MiB response head: got %d; want 502", status)
	}
}

func TestH1InformationalResponses(t *testing.T) {
	s := newScriptedUpstream(t, func(_, _ int, _ *http.Request, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 100 Continue\r\n\r\n"+
			"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"+okReply("final"))
		return true
	})
	p := newTestProxy(t, Options{}, s.upstream())
	url, c := front(t, p)
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url+"/x", nil)
	status, body, _ := do(t, c, req)
	if status != 200 || body != "final" {
		t.Fatalf("got %d %q; want 200 final", status, body)
	}
	if want := "103 </app.css>; rel=preload"; len(hints) != 1 || hints[0] != want {
		t.Errorf("informational responses the client saw: got %q; want [%q]", hints, want)
	}
}

func TestH1ConnectionNotReusedAfterCloseOrExcess(t *testing.T) {
	for _, tt := range []struct{ name, reply string }{
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
		{"bytes past the body", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newScriptedUpstream(t, func(_, _ int, _ *http.Request, w io.Writer) bool {
				io.WriteString(w, tt.reply)
				return true
			})
			p := newTestProxy(t, Options{}, s.upstream())
			url, c := front(t, p)
			for i := range 3 {
				if status, body := doMethod(t, c, http.MethodGet, url+"/x"); status != 200 || body != "ok" {
					t.Fatalf("request %d: got %d %q; want 200 ok", i, status, body)
				}
			}
			if got := s.conns.Load(); got != 3 {
				t.Errorf("upstream connections: got %d; want 3 (none reused)", got)
			}
		})
	}
}

// poll waits up to 5 seconds for cond.
func poll(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request still running when its upstream leaves the set for good does
// not leave its connection pooled behind.
func TestH1RetiredUpstreamClosesConnections(t *testing.T) {
	inside := make(chan struct{})
	gate := make(chan struct{})
	a := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inside)
			<-gate
		}
		io.WriteString(w, "a")
	})
	b := newBackend(t, "b", nil)
	p := newTestProxy(t, Options{}, a.upstream()) // DrainTimeout 0: the drain ends at once
	url, c := front(t, p)
	h1 := h1Of(t, p, a.upstream())
	done := make(chan int)
	go func() {
		status, _ := doMethod(t, c, http.MethodGet, url+"/slow")
		done <- status
	}()
	<-inside
	p.SetUpstreams([]discovery.Upstream{b.upstream()})
	poll(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.draining) == 0
	})
	close(gate)
	if status := <-done; status != 200 {
		t.Fatalf("request in flight during removal: got %d; want 200", status)
	}
	if got := h1.idleConns(); got != 0 {
		t.Errorf("idle connections to the removed upstream: got %d; want 0", got)
	}
}

func TestWriteRequest(t *testing.T) {
	req, err := http.NewRequest("GET", "http://upstream.invalid/a%2Fb?q=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.example:8443"
	req.Header = http.Header{
		"User-Agent":     {""},
		"Accept":         {"a", "b"},
		"X-Injected":     {"v\r\nX-Evil: 1"},
		"Bad Name":       {"x"},
		"Content-Length": {"5"},
	}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	if err := writeRequest(bw, req); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	got, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatalf("reading %q: %v", buf.String(), err)
	}
	want := http.Header{"Accept": {"a", "b"}, "X-Injected": {"v  X-Evil: 1"}}
	if got.Method != "GET" || got.RequestURI != "/a%2Fb?q=1" || got.Host != "app.example:8443" || !reflect.DeepEqual(got.Header, want) || got.ContentLength != 0 {
		t.Errorf("upstream would read %s %s host %q header %v length %d; want GET /a%%2Fb?q=1, %v", got.Method, got.RequestURI, got.Host, got.Header, got.ContentLength, want)
	}
	req.Host = "evil.example/\r\nX: y"
	if err := writeRequest(bufio.NewWriter(io.Discard), req); err == nil {
		t.Error("a Host with CR LF was written")
	}
}

func TestWriteRequestURI(t *testing.T) {
	urls := []*url.URL{{}, {Path: "/a b", ForceQuery: true}, {RawQuery: "q"}, {Scheme: "http", Opaque: "//h/p", RawQuery: "x"}}
	for _, raw := range []string{"/", "/a/b", "/a/b?x=1", "/a?", "/a%2Fb?q=%20", "/caf%C3%A9", "//x", "/a!b"} {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, u)
	}
	for _, u := range urls {
		var b strings.Builder
		bw := bufio.NewWriter(&b)
		writeRequestURI(bw, u)
		bw.Flush()
		if got, want := b.String(), u.RequestURI(); got != want {
			t.Errorf("writeRequestURI(%#v) = %q; want %q", u, got, want)
		}
	}
}

// upstreamDate is a Date an upstream sends, unlike any flowgate would.
const upstreamDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// TestNetHTTPPathPassesResponseFields: off the fast path (HTTP/2, and
// HTTP/1.1 through net/http's server), a response goes to the client with
// the upstream's one Date, and without a Content-Type when the upstream
// sent none: net/http's server would sniff one from the body.
func TestNetHTTPPathPassesResponseFields(t *testing.T) {
	s := newScriptedUpstream(t, func(_, _ int, req *http.Request, w io.Writer) bool {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nDate: "+upstreamDate+"\r\nContent-Length: 15\r\n\r\n<html>hi</html>")
		return true
	})
	p := newTestProxy(t, Options{}, s.upstream())
	for _, h2 := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(p)
		srv.EnableHTTP2 = h2
		srv.StartTLS()
		t.Cleanup(srv.Close)
		resp, err := srv.Client().Get(srv.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "<html>hi</html>" || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
			t.Fatalf("%s: got %q", resp.Proto, body)
		}
		if ct := resp.Header["Content-Type"]; ct != nil {
			t.Errorf("%s: Content-Type %q; want none, as the upstream sent", resp.Proto, ct)
		}
		if d := resp.Header["Date"]; !slices.Equal(d, []string{upstreamDate}) {
			t.Errorf("%s: Date %q; want the upstream's [%s]", resp.Proto, d, upstreamDate)
		}
	}
}

// TestH1CarriesHTTP2Requests: a GET over HTTP/2, whose request always has
// a body reader, is still a bodyless request and takes the HTTP/1.1
// transport; a POST over HTTP/2 keeps its body.
func TestH1CarriesHTTP2Requests(t *testing.T) {
	s := newScriptedUpstream(t, func(_, _ int, req *http.Request, w io.Writer) bool {
		io.WriteString(w, okReply(req.Method+" "+req.Header.Get("Content-Length")))
		return true
	})
	p := newTestProxy(t, Options{}, s.upstream())
	srv := httptest.NewUnstartedServer(p)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := srv.Client()
	for i := range 10 {
		resp, err := c.Get(srv.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "GET " {
			t.Fatalf("GET %d: %s %d %q; want HTTP/2 200 \"GET \"", i, resp.Proto, resp.StatusCode, body)
		}
	}
	if got := h1Of(t, p, s.upstream()).idleConns(); got != 1 {
		t.Errorf("HTTP/1.1 transport idle connections after 10 GETs over HTTP/2: got %d; want 1", got)
	}
	resp, err := c.Post(srv.URL+"/x", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "POST 5" {
		t.Errorf("POST over HTTP/2: upstream saw %q; want \"POST 5\"", body)
	}
}
