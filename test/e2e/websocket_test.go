package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flowgate/flowgate/test/harness"
)

// dialWS opens a WebSocket through flowgate over TLS, trusting the built-in
// CA (served on the admin listener), over HTTP/1.1 as WebSockets need.
func dialWS(ctx context.Context, fg *harness.Flowgate) (*websocket.Conn, *http.Response, error) {
	tc := fg.TLS.Clone()
	tc.NextProtos = []string{"http/1.1"}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	c, resp, err := websocket.Dial(ctx, "wss://"+fg.HTTPS+"/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(4 << 20)
	return c, resp, nil
}

// echo sends msg and checks that the same message comes back.
func echo(ctx context.Context, c *websocket.Conn, typ websocket.MessageType, msg []byte) error {
	if err := c.Write(ctx, typ, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	gotTyp, got, err := c.Read(ctx)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if gotTyp != typ || !bytes.Equal(got, msg) {
		return fmt.Errorf("got a %v message of %d bytes; want the %v message of %d bytes sent", gotTyp, len(got), typ, len(msg))
	}
	return nil
}

// TestWebSocket proxies WebSockets to the stub's echo: a text message, a
// 1 MiB binary message, and 100 concurrent sockets.
func TestWebSocket(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{a.Addr, b.Addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("echo and 1 MiB", func(t *testing.T) {
		c, resp, err := dialWS(ctx, fg)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		if node := resp.Header.Get("X-Node"); node != "a" && node != "b" {
			t.Errorf("101 response X-Node: got %q; want a or b", node)
		}
		if err := echo(ctx, c, websocket.MessageText, []byte("hello flowable")); err != nil {
			t.Errorf("text echo: %v", err)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		start := time.Now()
		if err := echo(ctx, c, websocket.MessageBinary, big); err != nil {
			t.Errorf("1 MiB echo: %v", err)
		}
		t.Logf("1 MiB WebSocket echo through flowgate: %v", time.Since(start))
		if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
			t.Errorf("close handshake: %v", err)
		}
	})

	t.Run("100 concurrent", func(t *testing.T) {
		const n = 100
		conns := make([]*websocket.Conn, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				c, _, err := dialWS(ctx, fg)
				if err != nil {
					errs[i] = fmt.Errorf("dial: %w", err)
					return
				}
				conns[i] = c
				errs[i] = echo(ctx, c, websocket.MessageText, fmt.Appendf(nil, "socket %d", i))
			})
		}
		wg.Wait()
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.CloseNow()
				}
			}
		}()
		failed := 0
		for i, err := range errs {
			if err != nil {
				failed++
				if failed <= 5 {
					t.Errorf("socket %d: %v", i, err)
				}
			}
		}
		if failed > 0 {
			t.Fatalf("%d of %d sockets failed", failed, n)
		}
		if !harness.Poll(5*time.Second, func() bool { return fg.Status().WebSockets == n }) {
			t.Errorf("/status websockets with %d open: got %d; want %d", n, fg.Status().WebSockets, n)
		}
		// Every socket still works after all are open.
		for i, c := range conns {
			if err := echo(ctx, c, websocket.MessageText, fmt.Appendf(nil, "again %d", i)); err != nil {
				t.Errorf("socket %d, second echo: %v", i, err)
			}
		}
		for _, c := range conns {
			c.Close(websocket.StatusNormalClosure, "")
		}
		if !harness.Poll(10*time.Second, func() bool { return fg.Status().WebSockets == 0 }) {
			t.Errorf("/status websockets after closing all: got %d; want 0", fg.Status().WebSockets)
		}
	})
}

// TestShutdownClosesWebSockets sends SIGTERM with WebSockets open: each
// client must get a clean close (1001, going away) instead of a dropped
// connection, and flowgate must exit without waiting for the sockets.
func TestShutdownClosesWebSockets(t *testing.T) {
	t.Parallel()
	a := harness.StartStub(t, "a")
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{a.Addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 5
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := dialWS(ctx, fg)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.CloseNow()
		if err := echo(ctx, c, websocket.MessageText, []byte("before shutdown")); err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		conns[i] = c
	}
	sent := time.Now()
	if err := fg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		_, _, err := c.Read(ctx)
		if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
			t.Errorf("socket %d after SIGTERM: got close status %v (%v); want %v", i, got, err, websocket.StatusGoingAway)
		}
	}
	code, err := fg.Wait(20 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("exit after SIGTERM: got %d, %v; want 0", code, err)
	}
	if d := time.Since(sent); d > 5*time.Second {
		t.Errorf("exit took %v with idle WebSockets open; want well under the 5 s close grace", d)
	}
	t.Logf("SIGTERM with %d WebSockets open: closed with 1001 and exited in %v", n, time.Since(sent).Round(time.Millisecond))
}
