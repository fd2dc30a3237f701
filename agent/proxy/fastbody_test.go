package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

// A request with a small Content-Length body stays on the fast path: the
// upstream gets the body whole, framed by the length flowgate writes
// itself, and the connection carries the next request. A POST without a
// body says so with Content-Length: 0, as net/http sends it.
func TestFastPathBodies(t *testing.T) {
	b := newBackend(t, "a", nil)
	p := newTestProxy(t, Options{}, b.upstream())
	addr, cfg, cs := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)

	json := `{"processDefinitionKey":"holidayRequest","variables":[]}`
	big := strings.Repeat("b", fastMaxBody)
	for i, tt := range []struct {
		name, req, want string
		wantLength      string
	}{
		{"JSON POST", "POST /flowable-rest/service/runtime/process-instances HTTP/1.1\r\nHost: app.test\r\n" +
			"Content-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(json)) + "\r\n\r\n" + json, json, fmt.Sprint(len(json))},
		{"PUT of 16 KiB", "PUT /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 16384\r\n\r\n" + big, big, "16384"},
		{"POST without a body", "POST /x HTTP/1.1\r\nHost: app.test\r\n\r\n", "", "0"},
		{"PATCH with Content-Length: 0", "PATCH /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n", "", "0"},
		{"DELETE", "DELETE /x HTTP/1.1\r\nHost: app.test\r\n\r\n", "", ""},
		{"OPTIONS", "OPTIONS /x HTTP/1.1\r\nHost: app.test\r\nOrigin: https://ui.test\r\n\r\n", "", ""},
	} {
		rc.send(tt.req)
		method, _, _ := strings.Cut(tt.req, " ")
		if resp, body := rc.read(method); resp.StatusCode != 200 || body != "a" {
			t.Fatalf("%s: got %d %q", tt.name, resp.StatusCode, body)
		}
		b.mu.Lock()
		got := b.bodies[len(b.bodies)-1]
		b.mu.Unlock()
		if got != tt.want {
			t.Errorf("%s: the upstream got a body of %d bytes; want %d", tt.name, len(got), len(tt.want))
		}
		if cs.open() != 1 {
			t.Fatalf("%s (request %d): %d fast-path connections; want the request served on the fast path", tt.name, i, cs.open())
		}
	}
	if got := b.hits.Load(); got != 6 {
		t.Errorf("upstream hits: %d; want 6", got)
	}
}

// serveEach serves ln's connections, each request read off one (through a
// read buffer of bufSize) handed to handle, until ln closes; handle
// returns false to close the request's connection.
func serveEach(ln net.Listener, bufSize int, handle func(c net.Conn, req *http.Request) bool) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, bufSize)
				for {
					req, err := http.ReadRequest(br)
					if err != nil || !handle(c, req) {
						return
					}
				}
			}()
		}
	}()
}

// recordingUpstream is an upstream that records each request exactly as it came
// off the wire, head and body, and answers "ok".
func recordingUpstream(t *testing.T) (discovery.Upstream, func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	reqs := make(chan string, 100)
	serveEach(ln, 4<<10, func(c net.Conn, req *http.Request) bool {
		body, _ := io.ReadAll(req.Body)
		var head strings.Builder
		fmt.Fprintf(&head, "%s %s", req.Method, req.RequestURI)
		if req.ContentLength >= 0 && len(req.TransferEncoding) == 0 {
			if _, ok := req.Header["Content-Length"]; ok || req.ContentLength > 0 {
				fmt.Fprintf(&head, " length=%d", req.ContentLength)
			}
		}
		if len(req.TransferEncoding) > 0 {
			fmt.Fprintf(&head, " te=%v", req.TransferEncoding)
		}
		if e := req.Header.Get("Expect"); e != "" {
			fmt.Fprintf(&head, " expect=%s", e)
		}
		reqs <- head.String() + " body=" + string(body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	seen := func() []string {
		var out []string
		for {
			select {
			case r := <-reqs:
				out = append(out, r)
			case <-time.After(200 * time.Millisecond):
				return out
			}
		}
	}
	return discovery.Upstream{Addr: ln.Addr().String(), Weight: 1}, seen
}

// What goes upstream is framed by flowgate alone: one Content-Length of
// the body's size, the method's Content-Length: 0 where net/http sends
// one, and nothing after the body.
func TestFastPathBodyFraming(t *testing.T) {
	up, seen := recordingUpstream(t)
	p := newTestProxy(t, Options{}, up)
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	// Two requests in one write, the second's head right after the
	// first's body, and a length with leading zeros.
	rc.send("POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 005\r\n\r\nhelloPUT /b HTTP/1.1\r\nHost: app.test\r\n\r\n")
	rc.read("POST")
	rc.read("PUT")
	rc.send("DELETE /c HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\nGET /d HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc")
	rc.read("DELETE")
	rc.read("GET")
	// With Expect, net/http's server takes the request, answers the
	// client's 100 itself as the body is read, and sends the body with the
	// head, without the Expect.
	rc.send("POST /e HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if resp, _ := rc.read("POST"); resp.StatusCode != http.StatusContinue {
		t.Fatalf("POST with Expect: got %d first; want 100", resp.StatusCode)
	}
	rc.send("world")
	rc.read("POST")
	want := []string{"POST /a length=5 body=hello", "PUT /b length=0 body=", "DELETE /c body=", "GET /d length=3 body=abc", "POST /e length=5 body=world"}
	if got := seen(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the upstream saw\n%q\nwant\n%q", got, want)
	}
}

// A body that comes in pieces, slower than the read buffer fills, arrives
// whole; one over max_body_bytes is read and dropped, answered 413, and
// the connection carries the next request; one that stops coming is answered 408
// after client_body_timeout, and the connection closes; a client that
// goes away mid-body reaches no upstream.
func TestFastPathBodyLimits(t *testing.T) {
	const timeout = 300 * time.Millisecond
	b := newBackend(t, "a", nil)
	p := newTestProxy(t, Options{MaxBodyBytes: 100, ClientBodyTimeout: timeout, MaxFails: 1, FailTimeout: time.Minute}, b.upstream())
	addr, cfg, cs := fastFront(t, p, ConnOptions{})

	rc := dialRaw(t, addr, cfg)
	rc.send("POST /slow HTTP/1.1\r\nHost: app.test\r\nContent-Length: 12\r\n\r\n")
	for range 12 {
		time.Sleep(timeout / 3)
		rc.send("x")
	}
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "a" {
		t.Fatalf("slow body: got %d %q; want 200 (each wait is within the timeout)", resp.StatusCode, body)
	}
	b.mu.Lock()
	last := b.bodies[len(b.bodies)-1]
	b.mu.Unlock()
	if last != strings.Repeat("x", 12) || cs.open() != 1 {
		t.Fatalf("slow body: upstream got %q, %d fast-path connections", last, cs.open())
	}

	// The head and the body in separate writes, as a client sends a body
	// it streams.
	hits := b.hits.Load()
	rc.send("POST /big HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2000\r\n\r\n")
	time.Sleep(20 * time.Millisecond)
	rc.send(strings.Repeat("y", 2000))
	resp, body := rc.read("POST")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || body != "request body too large\n" || resp.Close {
		t.Fatalf("body over max_body_bytes: got %d %q, close %v; want 413", resp.StatusCode, body, resp.Close)
	}
	rc.send("GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "a" || b.hits.Load() != hits+1 {
		t.Fatalf("after the 413: got %d %q; want the connection to carry the next request (the body read and dropped, not sent)", resp.StatusCode, body)
	}

	rc = dialRaw(t, addr, cfg)
	rc.send("POST /stalled HTTP/1.1\r\nHost: app.test\r\nContent-Length: 50\r\n\r\nhello")
	start := time.Now()
	rc.br.Peek(1)
	took := time.Since(start)
	time.Sleep(50 * time.Millisecond) // the whole answer, then the close
	raw, _ := rc.br.Peek(rc.br.Buffered())
	resp, body = rc.read("POST")
	if resp.StatusCode != http.StatusRequestTimeout || body != "request body timed out\n" || !resp.Close ||
		strings.Count(string(raw), "\r\nConnection: close\r\n") != 1 {
		t.Fatalf("stalled body: got %d %q, head\n%s\nwant 408 and one Connection: close", resp.StatusCode, body, raw)
	}
	start = time.Now()
	if _, err := rc.br.ReadByte(); err == nil || time.Since(start) > time.Second {
		t.Errorf("after a 408: read %v after %v; want the connection closed at once", err, time.Since(start))
	}
	if took < timeout-deadlineSlack(timeout) || took > timeout+2*time.Second {
		t.Errorf("stalled body answered after %v; want about %v", took, timeout)
	}

	hits = b.hits.Load()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "POST /gone HTTP/1.1\r\nHost: app.test\r\nContent-Length: 50\r\n\r\nhalf")
	c.Close()
	time.Sleep(100 * time.Millisecond)
	if got := b.hits.Load(); got != hits {
		t.Errorf("a client gone mid-body: the upstream got %d requests; want none", got-hits)
	}

	// The upstream was never held responsible.
	if status, body := getFast(t, addr, cfg, "/after"); status != 200 || body != "a" {
		t.Errorf("after the client errors: got %d %q; want the upstream still in", status, body)
	}
}

func getFast(t *testing.T, addr string, cfg *tls.Config, path string) (int, string) {
	t.Helper()
	rc := dialRaw(t, addr, cfg)
	rc.send("GET " + path + " HTTP/1.1\r\nHost: app.test\r\n\r\n")
	resp, body := rc.read("GET")
	return resp.StatusCode, body
}

// A body read whole can go to another upstream when the first cannot be
// reached; one an upstream took and failed on is not sent again.
func TestFastPathBodyRetries(t *testing.T) {
	good := newBackend(t, "good", nil)
	dead := discovery.Upstream{Addr: deadAddr(t), Weight: 1}
	p := newTestProxy(t, Options{RetryIdempotent: true}, dead, good.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	for i := range 2 { // round robin: one of the two starts at the dead node
		rc.send("POST /submit HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\n\r\nform=" + fmt.Sprint(i))
		if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "good" {
			t.Fatalf("POST %d: got %d %q; want the good node's answer", i, resp.StatusCode, body)
		}
	}
	good.mu.Lock()
	got := fmt.Sprint(good.bodies)
	good.mu.Unlock()
	if got != "[form=0 form=1]" {
		t.Errorf("the good node got %s; want both bodies whole", got)
	}

	var hits atomic.Int64
	reset := resetBackend(t, true, &hits)
	other := newBackend(t, "other", nil)
	p = newTestProxy(t, Options{RetryIdempotent: true}, reset, other.upstream())
	addr, cfg, _ = fastFront(t, p, ConnOptions{})
	for i := range 2 {
		rc := dialRaw(t, addr, cfg)
		rc.send("POST /submit HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\n\r\nform=" + fmt.Sprint(i))
		rc.read("POST")
	}
	if hits.Load() != 1 || other.hits.Load() != 1 {
		t.Errorf("POSTs to a node that resets after reading them: it got %d, the other %d; want 1 and 1 (not sent again)", hits.Load(), other.hits.Load())
	}
}

// A body goes to an HTTPS upstream as to a plain one, and the buffer
// serves the next request.
func TestFastPathBodyToHTTPSUpstream(t *testing.T) {
	b := newTLSBackend(t, "tls")
	p := newTestProxy(t, Options{Transport: TransportOptions{TLS: tlsClientFor(b.srv)}}, b.upstream())
	addr, cfg, cs := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	for _, s := range []string{"first", "second"} {
		rc.send(fmt.Sprintf("POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n%s", len(s), s))
		if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "tls" {
			t.Fatalf("POST %s: got %d %q", s, resp.StatusCode, body)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if fmt.Sprint(b.bodies) != "[first second]" || cs.open() != 1 {
		t.Errorf("HTTPS upstream got %q, %d fast-path connections; want first and second on the fast path", b.bodies, cs.open())
	}
}

// Off the fast path too (HTTP/2, or an HTTP/1.1 connection net/http
// serves), a small body is read whole first and goes upstream on the
// plain-HTTP transport with the length flowgate writes; a larger one
// streams through net/http's transport as before.
func TestSmallBodiesReadWhole(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			up, seen := recordingUpstream(t)
			p := newTestProxy(t, Options{}, up)
			url, c := frontProto(t, p, proto)
			small := strings.Repeat("s", fastMaxBody)
			large := strings.Repeat("l", fastMaxBody+1)
			for _, body := range []string{small, small, large} {
				req, _ := http.NewRequest(http.MethodPost, url+"/q", strings.NewReader(body))
				if status, got, _ := do(t, c, req); status != 200 || got != "ok" {
					t.Fatalf("POST of %d bytes: got %d %q", len(body), status, got)
				}
			}
			want := []string{"POST /q length=16384 body=" + small, "POST /q length=16384 body=" + small, "POST /q length=16385 body=" + large}
			if got := seen(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("the upstream saw %d requests (%.60q...); want 2 of 16384 bytes and 1 of 16385", len(got), got)
			}
			if got := h1Of(t, p, up).idleConns(); got != 1 {
				t.Errorf("idle connections of the plain-HTTP transport: %d; want 1 (the small bodies went through it)", got)
			}
		})
	}
}

// A body's failures are answered and logged after the request's client
// and ID are known: the 408 carries the ID, and the access log names the
// client of a stalled body and of one whose client went away.
func TestFastPathBodyFailuresLogged(t *testing.T) {
	const timeout = 200 * time.Millisecond
	b := newBackend(t, "a", nil)
	var logs lockedBuffer
	p := newTestProxy(t, Options{ClientBodyTimeout: timeout, RequestIDHeader: "X-Request-Id",
		AccessLog: slog.New(slog.NewJSONHandler(&logs, nil))}, b.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})

	rc := dialRaw(t, addr, cfg)
	rc.send("POST /stalled HTTP/1.1\r\nHost: app.test\r\nContent-Length: 50\r\n\r\nhello")
	resp, _ := rc.read("POST")
	if id := resp.Header.Get("X-Request-Id"); resp.StatusCode != http.StatusRequestTimeout || len(id) != 32 {
		t.Errorf("stalled body: got %d with X-Request-Id %q; want 408 with an ID", resp.StatusCode, id)
	}
	rc = dialRaw(t, addr, cfg)
	rc.send("POST /gone HTTP/1.1\r\nHost: app.test\r\nContent-Length: 50\r\n\r\nhalf")
	time.Sleep(50 * time.Millisecond)
	rc.c.Close()
	var lines []string
	poll(t, func() bool {
		lines = strings.Split(strings.TrimSpace(logs.String()), "\n")
		return len(lines) == 2
	})
	for i, want := range []string{`"path":"/stalled"`, `"path":"/gone"`} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], `"client":"127.0.0.1"`) || !strings.Contains(lines[i], `"request_id":"`) {
			t.Errorf("access log line %d: %s; want %s with the client and its request ID", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[0], `"status":408`) || !strings.Contains(lines[1], `"status":499`) {
		t.Errorf("access log statuses: %s / %s; want 408 and 499", lines[0], lines[1])
	}
}

// A POST of which part went out on a pooled connection before the write
// failed may have been acted on: it is not sent again. Small socket
// buffers make its 16 KiB go out in several writes; the upstream takes
// the head, acts, and resets the connection.
func TestH1PartialWriteNotResent(t *testing.T) {
	smallBuf := func(opt int, size int) func(string, string, syscall.RawConn) error {
		return func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, size) })
		}
	}
	lc := net.ListenConfig{Control: smallBuf(syscall.SO_RCVBUF, 1024)}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var posts atomic.Int64
	serveEach(ln, 1024, func(c net.Conn, req *http.Request) bool {
		if req.Method == http.MethodPost {
			posts.Add(1)
			time.Sleep(200 * time.Millisecond)
			c.(*net.TCPConn).SetLinger(0) // RST
			return false
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	addr := ln.Addr().String()
	tr := newH1Transport(addr, nil, TransportOptions{ResponseHeaderTimeout: time.Minute, IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 4}, time.Now)
	tr.dialer.Control = smallBuf(syscall.SO_SNDBUF, 2048)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/warm", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if tr.idleConns() != 1 {
		t.Fatalf("idle connections after the warm-up: %d; want 1", tr.idleConns())
	}
	body := &bufferedBody{b: bytes.Repeat([]byte("x"), fastMaxBody)}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/act", nil)
	req.Body, req.ContentLength = body, int64(len(body.b))
	if _, err := tr.RoundTrip(req); err == nil {
		t.Error("POST to an upstream that reset: no error")
	}
	time.Sleep(300 * time.Millisecond) // a second one would have come by now
	if got := posts.Load(); got != 1 {
		t.Errorf("the upstream got the POST %d times; want once", got)
	}
}

// A request that may have reached the upstream on a pooled connection,
// whose second try on a new connection cannot connect, fails as sent,
// not as a connect failure: the caller must not send it to another
// upstream as one that never went out.
func TestH1StaleThenRefusedIsNoConnectError(t *testing.T) {
	self := make(chan net.Listener, 1) // the listener, for the handler to close
	ln := acceptEach(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if i == 1 {
				(<-self).Close() // the new connection is refused
				return           // and this one closes unanswered
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	self <- ln
	addr := ln.Addr().String()
	tr := newH1Transport(addr, nil, TransportOptions{ResponseHeaderTimeout: time.Minute, IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 4}, time.Now)
	defer tr.CloseIdleConnections()
	for i := range 2 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/x", nil)
		resp, err := tr.RoundTrip(req)
		if i == 0 {
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			continue
		}
		if err == nil || isConnectError(err) {
			t.Errorf("GET sent on a pooled connection that closed, then refused a new one: error %v; want one that is no connect failure", err)
		}
	}
}

// A POST whose first HTTPS upstream fails the TLS handshake goes to
// another: nothing of it went out.
func TestBodyRetriedAfterFailedHandshake(t *testing.T) {
	ln := acceptEach(t, func(c net.Conn) { c.Close() }) // no TLS here
	good := newTLSBackend(t, "good")
	bad := discovery.Upstream{Addr: ln.Addr().String(), TLS: true, Weight: 1}
	p := newTestProxy(t, Options{Transport: TransportOptions{TLS: tlsClientFor(good.srv)}, MaxFails: 10}, bad, good.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	for i := range 2 { // round robin: one of the two starts at the bad node
		rc.send(fmt.Sprintf("POST /submit HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\n\r\nform=%d", i))
		if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "good" {
			t.Fatalf("POST %d: got %d %q; want the good node's answer", i, resp.StatusCode, body)
		}
	}
	good.mu.Lock()
	defer good.mu.Unlock()
	if fmt.Sprint(good.bodies) != "[form=0 form=1]" {
		t.Errorf("the good node got %q; want both bodies", good.bodies)
	}
}

// Bodies of every size up to fastMaxBody, from 16 clients at once, on the
// fast path, through net/http's HTTP/1.1 server and over HTTP/2: each
// arrives whole and as its client sent it, though their buffers are
// pooled and given back as soon as each round trip ends.
func TestConcurrentBodiesIntact(t *testing.T) {
	for _, front := range []string{"fast path", "HTTP/1.1", "HTTP/2"} {
		t.Run(front, func(t *testing.T) {
			b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(time.Millisecond)
				io.WriteString(w, r.Header.Get("X-Sum"))
			})
			p := newTestProxy(t, Options{}, b.upstream())
			var url string
			var c *http.Client
			if front == "fast path" {
				addr, cfg, _ := fastFront(t, p, ConnOptions{})
				tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 16}
				t.Cleanup(tr.CloseIdleConnections)
				url, c = "https://"+addr, &http.Client{Transport: tr, Timeout: 20 * time.Second}
			} else {
				url, c = frontProto(t, p, front)
			}
			var wg sync.WaitGroup
			var failed atomic.Int64
			for g := range 16 {
				wg.Go(func() {
					for i := range 20 {
						n := 1 + (g*977+i*1531)%fastMaxBody
						ch := byte('a' + (g+i)%26)
						sum := fmt.Sprintf("%c%d", ch, n)
						req, _ := http.NewRequest(http.MethodPut, url+"/x", strings.NewReader(strings.Repeat(string(ch), n)))
						req.Header.Set("X-Sum", sum)
						resp, err := c.Do(req)
						if err != nil {
							failed.Add(1)
							continue
						}
						got, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if string(got) != sum {
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if failed.Load() != 0 {
				t.Errorf("%d of 320 requests failed", failed.Load())
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			for i, body := range b.bodies {
				want := b.headers[i].Get("X-Sum")
				if len(body) == 0 || fmt.Sprintf("%c%d", body[0], len(body)) != want || strings.Count(body, body[:1]) != len(body) {
					t.Errorf("body %d: got %.20q... (%d bytes); want %s", i, body, len(body), want)
				}
			}
		})
	}
}
