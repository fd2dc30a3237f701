package fault

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flowgate/flowgate/test/harness"
)

// keptAlive is a client connection that made one request and idles.
type keptAlive struct {
	c  *tls.Conn
	br *bufio.Reader
}

// request sends GET /headers on the connection and reads the answer.
func (k *keptAlive) request() error {
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	defer k.c.SetDeadline(time.Time{})
	if _, err := io.WriteString(k.c, "GET /headers HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("got status %d; want 200", resp.StatusCode)
	}
	return nil
}

// TestIdleConnectionsAndWebSockets holds 2,000 idle keep-alive connections
// and 200 WebSockets open at once and measures flowgate's memory and
// descriptors before, during and after: memory stays bounded per
// connection and every descriptor is released when the clients close. It
// does not run in parallel with the other tests, whose connections would
// blur its figures.
func TestIdleConnectionsAndWebSockets(t *testing.T) {
	const (
		idle    = 2000
		sockets = 200
		workers = 8
		// perConnBudget bounds flowgate's RSS growth per open connection.
		perConnBudget = 64 << 10
	)
	raiseNoFile(t, 4*(idle+sockets))
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	pid := pidOf(t, fg.StateDir)
	if resp, _ := fg.Get("/headers"); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up request: got status %d; want 200", resp.StatusCode)
	}
	fg.Client.CloseIdleConnections()
	rssBefore, fdsBefore := rssKB(t, pid), fdCount(t, pid)
	// Pooled connections to the upstream are kept on purpose
	// (upstreams.keepalive); the descriptors compared are the others.
	clientFDs := func() int { return fdCount(t, pid) - connsTo(t, stub.Addr) }
	clientFDsBefore := clientFDs()

	// 2,000 connections, each with one request answered, left idle.
	conns := make([]*keptAlive, idle)
	errs := make(chan error, idle)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				c, err := tryDialTLS(fg, 20*time.Second)
				if err != nil {
					errs <- err
					continue
				}
				k := &keptAlive{c: c, br: bufio.NewReader(c)}
				if err := k.request(); err != nil {
					c.Close()
					errs <- err
					continue
				}
				conns[i] = k
			}
		})
	}
	start := time.Now()
	for i := range idle {
		next <- i
	}
	close(next)
	wg.Wait()
	openedIn := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatalf("opening the idle connections: %v", err)
	}
	defer func() {
		for _, k := range conns {
			if k != nil {
				k.c.Close()
			}
		}
	}()

	// 200 WebSockets to the stub's echo, each echoing once.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc := fg.TLS.Clone()
	tc.NextProtos = []string{"http/1.1"}
	wsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	wss := make([]*websocket.Conn, 0, sockets)
	defer func() {
		for _, c := range wss {
			c.CloseNow()
		}
	}()
	for i := range sockets {
		c, _, err := websocket.Dial(ctx, "wss://"+fg.HTTPS+"/ws", &websocket.DialOptions{HTTPClient: wsClient})
		if err != nil {
			t.Fatalf("WebSocket %d: %v", i, err)
		}
		wss = append(wss, c)
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatalf("WebSocket %d write: %v", i, err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "ping" {
			t.Fatalf("WebSocket %d echo: got %q, %v; want ping", i, msg, err)
		}
	}

	rssDuring, fdsDuring := rssKB(t, pid), fdCount(t, pid)
	if got := fg.Status().WebSockets; got != sockets {
		t.Errorf("/status websockets: got %d; want %d", got, sockets)
	}
	if fdsDuring < fdsBefore+idle+sockets {
		t.Errorf("descriptors with everything open: got %d; want at least %d (%d before + one per client connection)", fdsDuring, fdsBefore+idle+sockets, fdsBefore)
	}
	open := idle + sockets
	if grew := (rssDuring - rssBefore) << 10; grew > open*perConnBudget {
		t.Errorf("RSS grew by %d KiB for %d connections (%d B each); want at most %d B each", grew>>10, open, grew/open, perConnBudget)
	}
	// The idle connections still work, the first and the last opened.
	for _, k := range []*keptAlive{conns[0], conns[idle/2], conns[idle-1]} {
		if err := k.request(); err != nil {
			t.Errorf("a second request on an idle connection: %v", err)
		}
	}
	if resp, _ := fg.Get("/headers"); resp.StatusCode != http.StatusOK {
		t.Errorf("a new client with everything open: got status %d; want 200", resp.StatusCode)
	}

	// Close everything and watch the descriptors come back.
	for _, c := range wss {
		c.Close(websocket.StatusNormalClosure, "")
	}
	wss = nil
	for _, k := range conns {
		k.c.Close()
	}
	conns = nil
	closedAt := time.Now()
	if !harness.Poll(15*time.Second, func() bool { return clientFDs() <= clientFDsBefore+2 }) {
		t.Errorf("descriptors after every client closed, without pooled upstream connections: got %d; want about the %d before", clientFDs(), clientFDsBefore)
	}
	released := time.Since(closedAt)
	if got := fg.Status().WebSockets; got != 0 {
		t.Errorf("/status websockets after closing: got %d; want 0", got)
	}
	rssAfter, fdsAfter, pooled := rssKB(t, pid), fdCount(t, pid), connsTo(t, stub.Addr)
	harness.Figure(t, "%d idle keep-alive TLS connections + %d WebSockets (opened in %v + WebSockets): flowgate RSS %d KiB before, %d KiB during (+%d B per connection), %d KiB after",
		idle, sockets, openedIn.Round(time.Millisecond), rssBefore, rssDuring, ((rssDuring-rssBefore)<<10)/open, rssAfter)
	harness.Figure(t, "%d idle keep-alive TLS connections + %d WebSockets: flowgate descriptors %d before, %d during, %d after, of which %d pooled upstream connections (released within %v of the clients closing)",
		idle, sockets, fdsBefore, fdsDuring, fdsAfter, pooled, released.Round(10*time.Millisecond))
}
