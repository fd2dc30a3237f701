package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A client that asks for a large response and reads none of it is cut
// once a write has waited SendTimeout, and the upstream's response with
// it: on the HTTP/1.1 fast path, on net/http's HTTP/1.1 path and over
// HTTP/2 (a stream whose window the client never opens again).
func TestSendTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	chunk := make([]byte, 64<<10)
	for _, tt := range []struct {
		name string
		do   func(t *testing.T, addr string, cfg *tls.Config)
	}{
		{"HTTP/1.1 fast path", func(t *testing.T, addr string, cfg *tls.Config) {
			rc := dialRaw(t, addr, cfg)
			rc.c.Write([]byte("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"))
		}},
		{"HTTP/1.1 net/http", func(t *testing.T, addr string, cfg *tls.Config) {
			rc := dialRaw(t, addr, cfg)
			// A Content-Length, even 0, is not for the fast path.
			rc.c.Write([]byte("GET /big HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
		}},
		{"HTTP/2", func(t *testing.T, addr string, cfg *tls.Config) {
			cfg = cfg.Clone()
			cfg.NextProtos = []string{"h2"}
			tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
			t.Cleanup(tr.CloseIdleConnections)
			resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/big")
			if err != nil {
				t.Fatalf("HTTP/2 GET: %v", err)
			}
			if resp.ProtoMajor != 2 {
				t.Fatalf("got %s; want HTTP/2", resp.Proto)
			}
			t.Cleanup(func() { resp.Body.Close() })
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ended := make(chan error, 1)
			up := newBackend(t, "big", func(w http.ResponseWriter, r *http.Request) {
				var err error
				for i := 0; i < 4096 && err == nil; i++ { // up to 256 MiB
					_, err = w.Write(chunk)
				}
				ended <- err
			})
			p := newTestProxy(t, Options{SendTimeout: timeout}, up.upstream())
			addr, cfg, _ := fastFront(t, p, ConnOptions{})
			tt.do(t, addr, cfg)
			select {
			case err := <-ended:
				if err == nil {
					t.Fatal("the upstream wrote its whole response to a client that read nothing")
				}
			case <-time.After(timeout + 10*time.Second):
				t.Fatal("the upstream's response still held open 10 s past send_timeout by a client that reads nothing")
			}
		})
	}
}

// A write deadline set for one response must not cut what is written on
// the kept-alive connection after it, once it has passed: a large
// response, a pause past SendTimeout, then a request whose 100 Continue
// net/http's server writes before any response, after a response on the
// fast path (whose connection net/http then takes over: without clearing
// the deadline there, the client got "tls: bad record MAC") and on
// net/http's (whose server clears it after each response).
func TestSendTimeoutLeavesKeptAliveConnectionsWorking(t *testing.T) {
	const timeout = 200 * time.Millisecond
	big := strings.Repeat("x", 100<<10)
	up := newBackend(t, "big", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
	p := newTestProxy(t, Options{SendTimeout: timeout}, up.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	for _, first := range []string{http.MethodGet, http.MethodPost} { // fast path, net/http
		t.Run(first, func(t *testing.T) {
			var conns atomic.Int32
			tr := &http.Transport{TLSClientConfig: cfg, ExpectContinueTimeout: 5 * time.Second,
				DialTLSContext: func(ctx context.Context, network, a string) (net.Conn, error) {
					conns.Add(1)
					return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, a)
				}}
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			var body io.Reader
			if first == http.MethodPost {
				body = strings.NewReader("first")
			}
			req, _ := http.NewRequest(first, "https://"+addr+"/big", body)
			if status, got, _ := do(t, c, req); status != http.StatusOK || got != big {
				t.Fatalf("first request: got %d, %d bytes; want 200 and the %d", status, len(got), len(big))
			}
			time.Sleep(2 * timeout)
			req, _ = http.NewRequest(http.MethodPost, "https://"+addr+"/big", strings.NewReader("second"))
			req.Header.Set("Expect", "100-continue")
			if status, got, _ := do(t, c, req); status != http.StatusOK || got != big {
				t.Fatalf("request with Expect: 100-continue after the pause: got %d, %d bytes; want 200 and the %d", status, len(got), len(big))
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("connections: %d; want 1 (the second request on the kept-alive one)", n)
			}
		})
	}
}

// A response that waits for its upstream longer than SendTimeout between
// writes (server-sent events, a slow node) is not cut for it: the timeout
// bounds a write the client does not take, not the pauses between writes.
// An HTTP/2 stream's deadline is a timer that resets the stream when it
// fires, so it must not run between writes.
func TestSendTimeoutSparesPausesBetweenWrites(t *testing.T) {
	const timeout = 200 * time.Millisecond
	first := strings.Repeat("x", 32<<10) // past sendDeadlineAfter: later writes get the deadline
	up := newBackend(t, "events", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, first)
		http.NewResponseController(w).Flush()
		time.Sleep(3 * timeout)
		io.WriteString(w, "more")
		http.NewResponseController(w).Flush()
		time.Sleep(3 * timeout)
		io.WriteString(w, "end")
	})
	p := newTestProxy(t, Options{SendTimeout: timeout}, up.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	for _, tt := range []struct {
		name, method string
		protos       []string
	}{
		{"HTTP/1.1 fast path", http.MethodGet, []string{"http/1.1"}},
		{"HTTP/1.1 net/http", http.MethodPost, []string{"http/1.1"}},
		{"HTTP/2", http.MethodGet, []string{"h2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cfg.Clone()
			cfg.NextProtos = tt.protos
			tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: tt.protos[0] == "h2"}
			if tt.protos[0] != "h2" {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			t.Cleanup(tr.CloseIdleConnections)
			var body io.Reader
			if tt.method == http.MethodPost {
				body = strings.NewReader("x")
			}
			req, _ := http.NewRequest(tt.method, "https://"+addr+"/events", body)
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if want := tt.protos[0] == "h2"; (resp.ProtoMajor == 2) != want {
				t.Fatalf("got %s; want %v", resp.Proto, tt.protos)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			status, got := resp.StatusCode, string(b)
			if status != http.StatusOK || got != first+"moreend" {
				t.Fatalf("got %d and %d bytes ending %q; want 200 and all %d, ending \"moreend\"",
					status, len(got), got[max(0, len(got)-8):], len(first)+7)
			}
		})
	}
}

// An upstream that takes an HTTP/2 upload slowly, pausing longer than
// ClientBodyTimeout while the client has sent everything, does not get the
// client a 408: the timeout bounds a wait for the client, and an HTTP/2
// stream's read deadline is a timer that must not run between reads.
func TestClientBodyTimeoutSparesASlowUpstream(t *testing.T) {
	const timeout = 200 * time.Millisecond
	up := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {})
	up.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1<<20)
		n, _ := io.ReadFull(r.Body, buf)
		time.Sleep(3 * timeout) // the proxy's writes back up meanwhile
		rest, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d", int64(n)+rest)
	})
	p := newTestProxy(t, Options{ClientBodyTimeout: timeout}, up.upstream())
	srv := httptest.NewUnstartedServer(p)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	const size = 32 << 20 // more than the sockets and windows on the way hold
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/upload", bytes.NewReader(make([]byte, size)))
	status, got, _ := do(t, srv.Client(), req)
	if status != http.StatusOK || got != fmt.Sprint(size) {
		t.Fatalf("upload to a slow upstream: got %d %q; want 200 %d", status, got, size)
	}
}

// maskedText is a client's masked text frame carrying msg (under 126 bytes).
func maskedText(msg string) []byte {
	mask := [4]byte{7, 1, 9, 3}
	f := []byte{0x81, 0x80 | byte(len(msg)), mask[0], mask[1], mask[2], mask[3]}
	for i := range len(msg) {
		f = append(f, msg[i]^mask[i%4])
	}
	return f
}

// A WebSocket client that stops reading what the upstream pushes is cut
// once a write to it has waited SendTimeout, and the upstream's socket
// with it. A WebSocket that is idle for longer than SendTimeout, between
// two pushes, is not: the deadline is set for each write, not kept from
// the last one.
func TestWebSocketSendTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ended := make(chan error, 1)
	up := newBackend(t, "pusher", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		for {
			_, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			switch string(msg) {
			case "ping":
				err = c.Write(ctx, websocket.MessageText, []byte("pong"))
			case "flood": // up to 256 MiB, or until the socket is cut
				chunk := make([]byte, 64<<10)
				for i := 0; i < 4096 && err == nil; i++ {
					err = c.Write(ctx, websocket.MessageBinary, chunk)
				}
				ended <- err
				return
			}
			if err != nil {
				return
			}
		}
	})
	var logs lockedBuffer
	p := newTestProxy(t, Options{SendTimeout: timeout, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, up.upstream())
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	rc := dialRaw(t, addr, cfg)
	rc.send("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: got %v, %v; want 101", resp, err)
	}
	pong := func(what string) {
		t.Helper()
		rc.send(string(maskedText("ping")))
		got := make([]byte, 6)
		if _, err := io.ReadFull(rc.br, got); err != nil {
			t.Fatalf("%s: reading the pong: %v", what, err)
		}
		if string(got) != "\x81\x04pong" {
			t.Fatalf("%s: got %q; want a text frame \"pong\"", what, got)
		}
	}
	pong("first push")
	time.Sleep(3 * timeout) // idle past the deadline the first push set
	pong("a push after a pause longer than send_timeout")

	rc.send(string(maskedText("flood")))
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the upstream pushed 256 MiB to a client that read nothing")
		}
	case <-time.After(timeout + 10*time.Second):
		t.Fatal("the upstream still pushing 10 s past send_timeout to a client that reads nothing")
	}
	eventually(t, "the cut is logged", func() bool {
		return strings.Contains(logs.String(), "websocket closed: the client stopped reading")
	})
}
