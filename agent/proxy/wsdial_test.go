package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

// scriptedBackend is an upstream on loopback that reads each request's head,
// passes the connection to answer, and then reports on ended how the
// connection ended: nil when the proxy closed it, an error when it stayed
// open for 5 seconds.
func scriptedBackend(t *testing.T, answer func(net.Conn, *http.Request)) (up discovery.Upstream, ended <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					ch <- err
					return
				}
				answer(conn, req)
				_, err = io.Copy(io.Discard, conn)
				ch <- err
			})
		}
	})
	return discovery.Upstream{Addr: ln.Addr().String(), Weight: 1}, ch
}

func upgradeRequest(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Version", "13")
	return req
}

// waitEnded fails unless the proxy closed the upstream connection.
func waitEnded(t *testing.T, ended <-chan error) {
	t.Helper()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("upstream connection: %v; want it closed by the proxy", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream connection never ended")
	}
}

// TestUpgradeAnsweredWithoutSwitching: an upstream that refuses the
// upgrade has its answer and body passed on, and its connection closed.
func TestUpgradeAnsweredWithoutSwitching(t *testing.T) {
	up, ended := scriptedBackend(t, func(conn net.Conn, req *http.Request) {
		io.WriteString(conn, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\nno websocket here")
	})
	p := newTestProxy(t, Options{}, up)
	url, client := front(t, p)
	status, body, _ := do(t, client, upgradeRequest(t, context.Background(), url))
	if status != http.StatusForbidden || body != "no websocket here" {
		t.Fatalf("answer: got %d %q; want 403 %q", status, body, "no websocket here")
	}
	waitEnded(t, ended)
	eventually(t, "the in-flight count drops", func() bool { return p.Status()[0].InFlight == 0 })
	if got := p.WebSockets(); got != 0 {
		t.Errorf("WebSockets: got %d; want 0", got)
	}
}

// TestUpgradeResponseHeaderTimeout: an upstream that never answers the
// upgrade gets its connection closed after ResponseHeaderTimeout, and the
// client a 504.
func TestUpgradeResponseHeaderTimeout(t *testing.T) {
	up, ended := scriptedBackend(t, func(net.Conn, *http.Request) {})
	const timeout = 200 * time.Millisecond
	p := newTestProxy(t, Options{Transport: TransportOptions{ResponseHeaderTimeout: timeout}}, up)
	url, client := front(t, p)
	start := time.Now()
	status, _, _ := do(t, client, upgradeRequest(t, context.Background(), url))
	if status != http.StatusGatewayTimeout {
		t.Fatalf("status: got %d; want 504", status)
	}
	if took := time.Since(start); took < timeout {
		t.Errorf("answered after %v; want at least the timeout %v", took, timeout)
	}
	waitEnded(t, ended)
}

// TestUpgradeClientGoesAway: when the client leaves while the upstream has
// not answered the upgrade, the proxy closes the upstream connection.
func TestUpgradeClientGoesAway(t *testing.T) {
	arrived := make(chan struct{})
	up, ended := scriptedBackend(t, func(net.Conn, *http.Request) { close(arrived) })
	p := newTestProxy(t, Options{}, up)
	url, client := front(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Do(upgradeRequest(t, ctx, url))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client: got %v; want context.Canceled", err)
	}
	waitEnded(t, ended)
	eventually(t, "the in-flight count drops", func() bool { return p.Status()[0].InFlight == 0 })
}

// TestUpgradeResponseHeadBounded: the head of an answer to an upgrade is
// bounded like any other (502 beyond 1 MiB); a body after it is not.
func TestUpgradeResponseHeadBounded(t *testing.T) {
	big := strings.Repeat("b", 2*maxResponseHeaderBytes)
	for _, tt := range []struct {
		name   string
		answer string
		status int
		body   string
	}{
		{"2 MiB head", "HTTP/1.1 403 Forbidden\r\nX-Big: " + big + "\r\nContent-Length: 0\r\n\r\n", http.StatusBadGateway, ""},
		{"2 MiB body", "HTTP/1.1 403 Forbidden\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big, http.StatusForbidden, big},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up, _ := scriptedBackend(t, func(conn net.Conn, req *http.Request) {
				io.WriteString(conn, tt.answer)
			})
			p := newTestProxy(t, Options{}, up)
			url, client := front(t, p)
			status, body, _ := do(t, client, upgradeRequest(t, context.Background(), url))
			if status != tt.status || (tt.body != "" && body != tt.body) {
				t.Fatalf("got %d with a %d-byte body; want %d with %d bytes", status, len(body), tt.status, len(tt.body))
			}
		})
	}
}
