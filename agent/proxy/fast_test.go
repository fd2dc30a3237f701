package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

// fastFront serves p over TLS on loopback the way flowgate does: HTTP/1.1
// connections on the fast path (ConnServer.Listen), handed off to a
// net/http server in front of p. It returns the address and a client
// configuration that trusts the server.
func fastFront(t *testing.T, p *Proxy, o ConnOptions) (string, *tls.Config, *ConnServer) {
	return fastFrontVia(t, p, o, nil)
}

// testCert is a self-signed ECDSA certificate for 127.0.0.1, valid for an
// hour, and its parsed leaf.
func testCert(t *testing.T) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// fastFrontVia is fastFront with the net/http server accepting through
// wrap(the fast path's listener) when wrap is not nil.
func fastFrontVia(t *testing.T, p *Proxy, o ConnOptions, wrap func(net.Listener) net.Listener) (string, *tls.Config, *ConnServer) {
	t.Helper()
	cert, leaf := testCert(t)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	if o.Front == nil {
		o.Front = func(string, string) ([]string, bool) { return nil, true }
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 5 * time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := p.NewConnServer(o)
	srv := &http.Server{Handler: p, ErrorLog: log.New(testWriter{t}, "", 0)}
	hl := cs.Listen(ln, &tls.Config{Certificates: []tls.Certificate{cert},
		NextProtos: []string{"h2", "http/1.1"}}, log.New(testWriter{t}, "", 0))
	if wrap != nil {
		hl = wrap(hl)
	}
	go srv.Serve(hl)
	t.Cleanup(func() {
		srv.Close()
		cs.Close()
	})
	return ln.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}}, cs
}

// rawClient is one HTTP/1.1 connection to the front, written to by hand.
type rawClient struct {
	t  *testing.T
	c  *tls.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string, cfg *tls.Config) *rawClient {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response to a request with method and its whole body.
func (rc *rawClient) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading a response body: %v", err)
	}
	return resp, string(b)
}

func (cs *ConnServer) open() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.conns)
}

func TestFastPathServesThenHandsOff(t *testing.T) {
	b := newBackend(t, "a", nil)
	p := newTestProxy(t, Options{}, b.upstream())
	addr, cfg, cs := fastFront(t, p, ConnOptions{Front: func(host, _ string) ([]string, bool) {
		return []string{"max-age=60"}, host != "elsewhere.test"
	}})
	rc := dialRaw(t, addr, cfg)

	rc.send("GET /one HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-Host: evil.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 || body != "a" || resp.Header.Get("X-Backend") != "a" ||
		resp.Header.Get("Strict-Transport-Security") != "max-age=60" || resp.Header.Get("Date") == "" || resp.ContentLength != 1 {
		t.Fatalf("fast GET: got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	h := b.lastHeader()
	if h.Get("X-Forwarded-Host") != "app.test" || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "https" ||
		h.Get("X-Real-Ip") != "127.0.0.1" || h.Get("User-Agent") != "" {
		t.Errorf("upstream saw %v; want flowgate's forwarding headers only", h)
	}
	if cs.open() != 1 {
		t.Fatalf("fast-path connections after a GET: got %d; want 1", cs.open())
	}

	// HEAD, then two pipelined GETs in one write.
	rc.send("HEAD /two HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp, body := rc.read("HEAD"); resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "1" {
		t.Errorf("HEAD: got %d %q, Content-Length %q", resp.StatusCode, body, resp.Header.Get("Content-Length"))
	}
	rc.send("GET /3 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /4 HTTP/1.1\r\nHost: app.test\r\n\r\n")
	for i := range 2 {
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "a" {
			t.Errorf("pipelined GET %d: got %d %q", i, resp.StatusCode, body)
		}
	}
	if got := b.hits.Load(); got != 4 || cs.open() != 1 {
		t.Fatalf("after 4 requests: upstream hits %d, fast-path connections %d; want 4, 1", got, cs.open())
	}

	// A POST with a small body stays on the fast path, and so does a GET
	// pipelined behind it in the same write.
	rc.send("POST /five HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhelloGET /5b HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "a" || resp.Header.Get("Strict-Transport-Security") != "max-age=60" {
		t.Errorf("fast POST: got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "a" {
		t.Errorf("GET after a fast POST: got %d %q", resp.StatusCode, body)
	}
	if cs.open() != 1 {
		t.Fatalf("fast-path connections after a POST of 5 bytes: got %d; want 1", cs.open())
	}

	// A chunked POST goes to net/http, with the rest of the connection; a
	// GET pipelined behind it too.
	rc.send("POST /six HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\nGET /seven HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "a" || resp.Header.Get("Strict-Transport-Security") != "" {
		t.Errorf("POST after the handoff: got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "a" {
		t.Errorf("GET after the handoff: got %d %q", resp.StatusCode, body)
	}
	b.mu.Lock()
	lastBodies := b.bodies[len(b.bodies)-4:]
	b.mu.Unlock()
	if !slices.Equal(lastBodies, []string{"hello", "", "world", ""}) {
		t.Errorf("upstream bodies: got %q; want hello, none, world, none", lastBodies)
	}
	if cs.open() != 0 {
		t.Errorf("fast-path connections after the handoff: got %d; want 0", cs.open())
	}

	// A host Front refuses goes to net/http's handler.
	rc2 := dialRaw(t, addr, cfg)
	rc2.send("GET / HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n")
	if resp, _ := rc2.read("GET"); resp.StatusCode != 200 || cs.open() != 0 {
		t.Errorf("refused host: got %d, %d fast-path connections; want it served by net/http", resp.StatusCode, cs.open())
	}

	// A head larger than the fast path's buffer goes to net/http too.
	rc3 := dialRaw(t, addr, cfg)
	rc3.send("GET / HTTP/1.1\r\nHost: app.test\r\nCookie: " + strings.Repeat("c", 6000) + "\r\n\r\n")
	if resp, body := rc3.read("GET"); resp.StatusCode != 200 || body != "a" || len(b.lastHeader().Get("Cookie")) != 6000 {
		t.Errorf("6 KB head: got %d %q", resp.StatusCode, body)
	}
}

func TestFastPathUpstreamResponses(t *testing.T) {
	s := newScriptedUpstream(t, func(_, _ int, req *http.Request, w io.Writer) bool {
		switch req.URL.Path {
		case "/chunked":
			io.WriteString(w, "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n")
		case "/chunked-big":
			// 40 KiB in chunks of 16 KiB, the last with the end of the
			// body in the same write.
			var b strings.Builder
			b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for _, n := range []int{16 << 10, 16 << 10, 8 << 10} {
				fmt.Fprintf(&b, "%x\r\n%s\r\n", n, strings.Repeat("b", n))
			}
			b.WriteString("0\r\n\r\n")
			io.WriteString(w, b.String())
		case "/chunked-late":
			// The end of the body comes after a pause.
			io.WriteString(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
			time.Sleep(30 * time.Millisecond)
			io.WriteString(w, "0\r\n\r\n")
		case "/hop":
			io.WriteString(w, "HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nX-Public: yes\r\nContent-Length: 2\r\n\r\nok")
		case "/204":
			io.WriteString(w, "HTTP/1.1 204 No Content\r\n\r\n")
		case "/304":
			io.WriteString(w, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n")
		case "/hints":
			io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"+okReply("final"))
		case "/close":
			io.WriteString(w, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
			return false
		case "/short":
			io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
			return false
		case "/status":
			io.WriteString(w, "HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n")
		case "/badname":
			io.WriteString(w, "HTTP/1.1 200 OK\r\nBad Name: x\r\nX-Ok: 1\r\nContent-Length: 2\r\n\r\nok")
		case "/dated":
			io.WriteString(w, "HTTP/1.1 200 OK\r\nDate: "+upstreamDate+"\r\nContent-Length: 2\r\n\r\nok")
		}
		return true
	})
	p := newTestProxy(t, Options{}, s.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)

	// One Date: the upstream's when it sent one, else flowgate's; and no
	// Content-Type the upstream did not send.
	rc.send("GET /dated HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); body != "ok" || !slices.Equal(resp.Header["Date"], []string{upstreamDate}) || resp.Header["Content-Type"] != nil {
		t.Errorf("upstream's Date: got Date %q, Content-Type %q; want Date [%s], no Content-Type", resp.Header["Date"], resp.Header["Content-Type"], upstreamDate)
	}
	// A field name net/http's parser lets through with a space in it is
	// dropped, as net/http's server drops it.
	rc.send("GET /badname HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); body != "ok" || resp.Header["Bad Name"] != nil || resp.Header.Get("X-Ok") != "1" {
		t.Errorf("invalid field name: got %q %v; want it dropped, X-Ok kept", body, resp.Header)
	}
	rc.send("GET /hop HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := rc.read("GET"); len(resp.Header["Date"]) != 1 {
		t.Errorf("no upstream Date: got Date %q; want flowgate's, once", resp.Header["Date"])
	}

	rc.send("GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body := rc.read("GET")
	if body != "abcde" || resp.ContentLength != -1 || resp.Trailer.Get("X-Sum") != "5" {
		t.Errorf("chunked: got %q, length %d, trailer %v", body, resp.ContentLength, resp.Trailer)
	}
	// Each chunked body ends where it should: the next response on the
	// connection reads whole after it.
	rc.send("GET /chunked-big HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); body != strings.Repeat("b", 40<<10) || resp.ContentLength != -1 || len(resp.Trailer) != 0 {
		t.Errorf("chunked, 40 KiB: got %d bytes, length %d, trailer %v", len(body), resp.ContentLength, resp.Trailer)
	}
	rc.send("GET /chunked-late HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); body != "abc" || resp.ContentLength != -1 {
		t.Errorf("chunked, end after a pause: got %q, length %d", body, resp.ContentLength)
	}
	rc.send("GET /hop HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body = rc.read("GET")
	if body != "ok" || resp.Header.Get("X-Private") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Public") != "yes" {
		t.Errorf("hop-by-hop fields: got %q %v", body, resp.Header)
	}
	rc.send("GET /204 HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 204 || body != "" {
		t.Errorf("204: got %d %q", resp.StatusCode, body)
	}
	rc.send("GET /304 HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 304 || body != "" || resp.Header.Get("Content-Length") != "10" || resp.Header.Get("Etag") != `"x"` {
		t.Errorf("304: got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	rc.send("GET /status HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 599 {
		t.Errorf("unknown status: got %d", resp.StatusCode)
	}
	// 103 reaches the client before the final response.
	rc.send("GET /hints HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(rc.br, nil); err != nil || resp.StatusCode != 103 || resp.Header.Get("Link") == "" {
		t.Fatalf("early hints: got %v, %v", resp, err)
	}
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "final" {
		t.Errorf("after early hints: got %d %q", resp.StatusCode, body)
	}
	// A body that ends with the upstream's connection is sent chunked.
	rc.send("GET /close HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); body != "until the end" || resp.ContentLength != -1 || resp.Close {
		t.Errorf("close-delimited: got %q, length %d, close %v", body, resp.ContentLength, resp.Close)
	}
	// A body cut short ends the client's connection: the client must see
	// the response is incomplete.
	rc.send("GET /short HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("short body: read %q without an error; want the connection cut", b)
	}
}

// TestFastPathBareLF: a request head, or an upstream's response head,
// whose lines end in LF alone goes to net/http's parsers at once, which
// read it; waiting for the "\r\n\r\n" of a strict head would last until a
// timeout.
func TestFastPathBareLF(t *testing.T) {
	s := newScriptedUpstream(t, func(_, _ int, req *http.Request, w io.Writer) bool {
		if req.URL.Path == "/lf" {
			io.WriteString(w, "HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok")
		} else {
			io.WriteString(w, okReply("crlf"))
		}
		return true
	})
	p := newTestProxy(t, Options{}, s.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})

	rc := dialRaw(t, addr, cfg)
	rc.c.SetDeadline(time.Now().Add(3 * time.Second))
	rc.send("GET /lf HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "ok" || resp.Header.Get("X-A") != "1" {
		t.Errorf("upstream head in bare LFs: got %d %q %v", resp.StatusCode, body, resp.Header)
	}

	rc = dialRaw(t, addr, cfg)
	rc.c.SetDeadline(time.Now().Add(3 * time.Second))
	rc.send("GET /x HTTP/1.1\nHost: a\n\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "crlf" {
		t.Errorf("request head in bare LFs: got %d %q", resp.StatusCode, body)
	}
}

func TestFastPathAnswers(t *testing.T) {
	paths, err := NewPathPolicy([]string{"/actuator"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := NewRateLimiter(RateLimiterOptions{Rate: 1, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProxy(t, Options{Paths: paths, RateLimit: rl})
	addr, cfg, cs := fastFront(t, p, ConnOptions{Front: func(string, string) ([]string, bool) { return []string{"max-age=1"}, true }})
	rc := dialRaw(t, addr, cfg)
	rc.send("GET /actuator/env HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 403 || !strings.Contains(body, "path policy") ||
		resp.Header.Get("Strict-Transport-Security") != "max-age=1" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("blocked path: got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	rc.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("no upstream: got %d %v", resp.StatusCode, resp.Header)
	}
	rc.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("over the rate: got %d %v", resp.StatusCode, resp.Header)
	}
	rc.send("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if resp, _ := rc.read("GET"); !resp.Close {
		t.Errorf("Connection: close asked: response says close %v", resp.Close)
	}
	if _, err := rc.br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close: read %v; want EOF", err)
	}
	poll(t, func() bool { return cs.open() == 0 })
}

// A HEAD that flowgate answers itself gets the GET's head and no body,
// so that the next response on the connection starts where the client
// expects it.
func TestFastPathAnswersToHead(t *testing.T) {
	paths, err := NewPathPolicy([]string{"/actuator"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProxy(t, Options{Paths: paths})
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	for _, tt := range []struct {
		path string
		code int
		body string
	}{
		{"/actuator/env", 403, "forbidden by flowgate path policy\n"},
		{"/x", 503, "no upstream available; try again shortly\n"},
	} {
		rc.send("HEAD " + tt.path + " HTTP/1.1\r\nHost: a\r\n\r\nGET " + tt.path + " HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, body := rc.read("HEAD"); resp.StatusCode != tt.code || body != "" || resp.ContentLength != int64(len(tt.body)) {
			t.Errorf("HEAD %s: got %d, length %d, body %q; want %d with the GET's length and no body", tt.path, resp.StatusCode, resp.ContentLength, body, tt.code)
		}
		if resp, body := rc.read("GET"); resp.StatusCode != tt.code || body != tt.body {
			t.Fatalf("GET %s after its HEAD on the same connection: got %d %q", tt.path, resp.StatusCode, body)
		}
	}
}

// A client that leaves while its request waits upstream cancels it, as
// net/http's server does.
func TestFastPathClientGoneCancelsUpstream(t *testing.T) {
	gone := make(chan time.Time, 1)
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			gone <- time.Now()
		case <-time.After(10 * time.Second):
		}
	})
	p := newTestProxy(t, Options{}, b.upstream())
	addr, cfg, cs := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	rc.send("GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
	poll(t, func() bool { return b.hits.Load() == 1 })
	time.Sleep(2 * clientWatchAfter)
	left := time.Now()
	rc.c.Close()
	select {
	case at := <-gone:
		if d := at.Sub(left); d > 2*time.Second {
			t.Errorf("upstream request cancelled %v after the client left", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream request not cancelled 5 s after the client left")
	}
	poll(t, func() bool { return cs.open() == 0 })
}

// A request slower than the client watch, followed by a pipelined one:
// the watch must leave the second request for the next read.
func TestFastPathWatchKeepsPipelinedRequest(t *testing.T) {
	var n atomic.Int64
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			time.Sleep(3 * clientWatchAfter)
		}
		io.WriteString(w, r.URL.Path)
	})
	p := newTestProxy(t, Options{}, b.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	rc.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(2 * clientWatchAfter)
	rc.send("GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"/slow", "/next"} {
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != want {
			t.Errorf("got %d %q; want 200 %q", resp.StatusCode, body, want)
		}
	}
}

func TestFastPathTimeoutsAndShutdown(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	b := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "a")
	})
	p := newTestProxy(t, Options{}, b.upstream())
	addr, cfg, cs := fastFront(t, p, ConnOptions{IdleTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond})

	// Idle after a response: closed after IdleTimeout.
	rc := dialRaw(t, addr, cfg)
	rc.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	rc.read("GET")
	start := time.Now()
	if _, err := rc.br.ReadByte(); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("idle connection: read %v after %v; want closed after 300ms", err, time.Since(start))
	}
	// Half a head: closed after ReadHeaderTimeout.
	rc = dialRaw(t, addr, cfg)
	rc.send("GET / HTTP/1.1\r\nHo")
	start = time.Now()
	if _, err := rc.br.ReadByte(); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("half a head: read %v after %v; want closed after 300ms", err, time.Since(start))
	}

	// Shutdown: an idle connection closes at once, a busy one after its
	// response, which says Connection: close.
	idle := dialRaw(t, addr, cfg)
	idle.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	idle.read("GET")
	busy := dialRaw(t, addr, cfg)
	busy.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	poll(t, func() bool { return b.hits.Load() == 3 })
	done := make(chan error, 1)
	go func() { done <- cs.Shutdown(context.Background()) }()
	if _, err := idle.br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection at shutdown: read %v; want EOF", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	unblock()
	if resp, body := busy.read("GET"); resp.StatusCode != 200 || body != "a" || !resp.Close {
		t.Errorf("busy connection at shutdown: got %d %q close %v", resp.StatusCode, body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// The fast path pins a browser to an upstream with the sticky cookie as
// the net/http path does, and follows the cookie it sent.
func TestFastPathStickyCookie(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	p := newTestProxy(t, Options{StickyCookie: "FGNODE"}, a.upstream(), b.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	rc.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, first := rc.read("GET")
	cookie := stickyFrom(t, resp.Header, "FGNODE")
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly {
		t.Fatalf("first response: cookie %v; Set-Cookie %q", cookie, resp.Header.Values("Set-Cookie"))
	}
	for i := range 6 {
		rc.send("GET / HTTP/1.1\r\nHost: a\r\nCookie: other=1; FGNODE=" + cookie.Value + "\r\n\r\n")
		resp, body := rc.read("GET")
		if body != first || len(resp.Header.Values("Set-Cookie")) != 0 {
			t.Errorf("request %d with the cookie: served by %q (first %q), Set-Cookie %q", i, body, first, resp.Header.Values("Set-Cookie"))
		}
	}
}

func TestFrameChunk(t *testing.T) {
	for _, n := range []int{1, 15, 16, 4096, 16 << 10, len(copyBuf{}) - chunkData - 2} {
		var buf copyBuf
		for i := range n {
			buf[chunkData+i] = 'a' + byte(i%26)
		}
		framed := frameChunk(buf[:], n)
		r := httputilChunked(t, append(append([]byte{}, framed...), "0\r\n\r\n"...))
		if len(r) != n || (n > 0 && r[n-1] != 'a'+byte((n-1)%26)) {
			t.Errorf("chunk of %d: decoded %d bytes", n, len(r))
		}
	}
}

// httputilChunked decodes a chunked body.
func httputilChunked(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(httputil.NewChunkedReader(strings.NewReader(string(b))))
	if err != nil {
		t.Fatalf("decoding %q...: %v", b[:min(len(b), 30)], err)
	}
	return out
}

// brokenListener fails every Accept with err.
type brokenListener struct {
	net.Listener
	err error
}

func (l brokenListener) Accept() (net.Conn, error) { return nil, l.err }

// A listener that fails for good ends net/http's server with its error,
// as it would without the fast path; one that is closed ends it quietly.
func TestFastListenerErrors(t *testing.T) {
	p := newTestProxy(t, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("listener broken")
	hl := p.NewConnServer(ConnOptions{}).Listen(brokenListener{ln, broken}, &tls.Config{}, log.New(testWriter{t}, "", 0))
	if _, err := hl.Accept(); !errors.Is(err, broken) {
		t.Errorf("Accept on a broken listener: got %v; want %v", err, broken)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl2 := p.NewConnServer(ConnOptions{}).Listen(ln2, &tls.Config{}, log.New(testWriter{t}, "", 0))
	hl2.Close()
	if _, err := hl2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: got %v; want net.ErrClosed", err)
	}
}

// acceptHook calls each for every connection net/http's server accepts.
type acceptHook struct {
	net.Listener
	each func(net.Conn)
}

func (l acceptHook) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.each(c)
	}
	return c, err
}

// An HTTP/2 connection's writes are coalesced (coalesce.go), and many
// concurrent streams of different sizes on one connection each get their
// own response whole; a connection handed off over HTTP/1.1 writes
// straight to its socket.
func TestHTTP2WritesCoalesced(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n+len(r.URL.Path)))
		io.WriteString(w, r.URL.Path)
		w.Write(bytes.Repeat([]byte{'x'}, n))
	}))
	t.Cleanup(srv.Close)
	p := newTestProxy(t, Options{}, discovery.Upstream{Addr: strings.TrimPrefix(srv.URL, "http://"), Weight: 1})
	var mu sync.Mutex
	coalescing := map[string]bool{}
	addr, cfg, _ := fastFrontVia(t, p, ConnOptions{}, func(l net.Listener) net.Listener {
		return acceptHook{Listener: l, each: func(c net.Conn) {
			tc, _ := c.(*tls.Conn)
			if tc == nil {
				tc = c.(*prefixConn).Conn.(*tls.Conn)
			}
			cc, _ := tc.NetConn().(*coalescingConn)
			mu.Lock()
			coalescing[tc.ConnectionState().NegotiatedProtocol] = cc != nil && cc.on.Load()
			mu.Unlock()
		}}
	})
	h2cfg := cfg.Clone()
	h2cfg.NextProtos = []string{"h2"}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: h2cfg, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}, Timeout: 20 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			path := "/s" + strconv.Itoa(i)
			n := (i * 7919) % (48 << 10)
			resp, err := client.Get("https://" + addr + path + "?n=" + strconv.Itoa(n))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.ProtoMajor != 2 || !strings.HasPrefix(string(body), path) || len(body) != len(path)+n ||
				strings.Count(string(body), "x") != n {
				errs <- fmt.Errorf("%s: %s, %d bytes, %v", path, resp.Proto, len(body), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Over HTTP/1.1, a request the fast path hands off (it has a body).
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 20 * time.Second}
	t.Cleanup(h1.CloseIdleConnections)
	resp, err := h1.Post("https://"+addr+"/post?n=3", "text/plain", io.MultiReader(strings.NewReader("body"))) // chunked
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if on, ok := coalescing["h2"]; !ok || !on {
		t.Errorf("HTTP/2 connection coalescing: seen %v, on %v; want on", ok, on)
	}
	if on, ok := coalescing["http/1.1"]; !ok || on {
		t.Errorf("handed-off HTTP/1.1 connection coalescing: seen %v, on %v; want off", ok, on)
	}
}
