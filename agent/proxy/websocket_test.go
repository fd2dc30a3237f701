package proxy

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flowgate/flowgate/discovery"
)

// wsBackend is a real WebSocket echo server; it remembers the handshake
// headers it received.
type wsBackend struct {
	*backend
	upgrades atomic.Int64
}

func newWSBackend(t *testing.T, name string) *wsBackend {
	t.Helper()
	wb := &wsBackend{}
	wb.backend = newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			w.Write([]byte(name))
			return
		}
		// Counted before the answer: a client that has seen the 101 must
		// find it counted.
		wb.upgrades.Add(1)
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		c.SetReadLimit(1 << 20)
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(name+":"), msg...)); err != nil {
				return
			}
		}
	})
	return wb
}

// dialWS opens a WebSocket through the proxy at baseURL.
func dialWS(t *testing.T, baseURL string, client *http.Client) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(baseURL, "http") + "/ws"
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("dialing %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status: got %d; want 101", resp.StatusCode)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(1 << 20)
	return c
}

// echo sends msg and returns the reply, or the error.
func echo(c *websocket.Conn, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return "", err
	}
	_, b, err := c.Read(ctx)
	return string(b), err
}

// waitClosed waits until the server side ends the socket and reports how
// long it took.
func waitClosed(t *testing.T, c *websocket.Conn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_, _, err := c.Read(ctx)
	if err == nil {
		t.Fatal("read a message; want the socket closed")
	}
	if ctx.Err() != nil {
		t.Fatalf("socket still open after %v", within)
	}
	return time.Since(start)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebSocketThroughProxy(t *testing.T) {
	for _, tlsFront := range []bool{false, true} {
		name := "http"
		if tlsFront {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			a := newWSBackend(t, "a")
			m := NewMetrics(nil)
			p := newTestProxy(t, Options{Metrics: m}, a.upstream())
			var url string
			var client *http.Client
			if tlsFront {
				url, client = frontTLS(t, p)
			} else {
				url, client = front(t, p)
			}
			c := dialWS(t, url, client)
			for _, msg := range []string{"hello", strings.Repeat("x", 100<<10)} {
				got, err := echo(c, msg)
				if err != nil || got != "a:"+msg {
					t.Fatalf("echo: got %.20q, %v; want %.20q", got, err, "a:"+msg)
				}
			}
			if got := p.WebSockets(); got != 1 {
				t.Errorf("WebSockets: got %d; want 1", got)
			}
			if got := gaugeValue(t, m.websockets); got != 1 {
				t.Errorf("flowgate_websockets_active: got %v; want 1", got)
			}
			h := a.lastHeader()
			if h.Get("X-Forwarded-Proto") != "https" || !strings.EqualFold(h.Get("Upgrade"), "websocket") {
				t.Errorf("upstream handshake headers: Upgrade %q X-Forwarded-Proto %q; want websocket, https", h.Get("Upgrade"), h.Get("X-Forwarded-Proto"))
			}
			c.Close(websocket.StatusNormalClosure, "bye")
			eventually(t, "the proxy forgets the closed socket", func() bool { return p.WebSockets() == 0 })
			if got := gaugeValue(t, m.websockets); got != 0 {
				t.Errorf("flowgate_websockets_active after close: got %v; want 0", got)
			}
			eventually(t, "in-flight count drops", func() bool { return p.Status()[0].InFlight == 0 })
		})
	}
}

func TestWebSocketToTLSUpstream(t *testing.T) {
	a := newWSBackend(t, "a")
	a.srv.Close()
	// Same handler, served over TLS.
	tlsSrv := httptestTLS(t, a.srv.Config.Handler)
	up := discovery.Upstream{Addr: tlsSrv.Listener.Addr().String(), TLS: true, Weight: 1}
	p := newTestProxy(t, Options{Transport: TransportOptions{TLS: tlsClientFor(tlsSrv)}}, up)
	url, client := frontTLS(t, p)
	c := dialWS(t, url, client)
	if got, err := echo(c, "over tls"); err != nil || got != "a:over tls" {
		t.Fatalf("echo: got %q, %v; want %q", got, err, "a:over tls")
	}
	if status, body, _ := get(t, client, url+"/plain", nil); status != http.StatusOK || body != "a" {
		t.Errorf("plain request to the TLS upstream: got %d %q; want 200 \"a\"", status, body)
	}
}

func TestWebSocketLimit(t *testing.T) {
	a := newWSBackend(t, "a")
	p := newTestProxy(t, Options{MaxWebSockets: 1}, a.upstream())
	url, client := front(t, p)
	dialWS(t, url, client)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", &websocket.DialOptions{HTTPClient: client})
	if err == nil {
		t.Fatal("second WebSocket accepted; want 503 beyond MaxWebSockets=1")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second WebSocket: got %v; want 503 with Retry-After", resp)
	}
	if got := a.upgrades.Load(); got != 1 {
		t.Errorf("upgrades reaching the upstream: got %d; want 1", got)
	}
}

func TestDrainClosesWebSocketsAfterTimeout(t *testing.T) {
	a := newWSBackend(t, "a")
	b := newWSBackend(t, "b")
	const drain = 300 * time.Millisecond
	p := newTestProxy(t, Options{DrainTimeout: drain}, a.upstream())
	url, client := front(t, p)
	c := dialWS(t, url, client)

	start := time.Now()
	if !p.SetUpstreams([]discovery.Upstream{b.upstream()}) {
		t.Fatal("SetUpstreams: got no change; want a change")
	}
	if got, err := echo(c, "still there"); err != nil || got != "a:still there" {
		t.Fatalf("during the drain: got %q, %v; want the socket to a still open", got, err)
	}
	if got := stateOf(p, a.upstream().Key()); got != "draining" {
		t.Errorf("status of the removed node: got %q; want draining", got)
	}
	waitClosed(t, c, 5*time.Second)
	if took := time.Since(start); took < drain {
		t.Errorf("socket closed %v after the node left; want at least the drain timeout %v", took, drain)
	}
	eventually(t, "the drained node leaves the status", func() bool { return stateOf(p, a.upstream().Key()) == "absent" })
	eventually(t, "the proxy forgets the socket", func() bool { return p.WebSockets() == 0 })

	// New sockets go to the remaining node.
	c2 := dialWS(t, url, client)
	if got, err := echo(c2, "x"); err != nil || got != "b:x" {
		t.Errorf("new socket: got %q, %v; want %q", got, err, "b:x")
	}
}

func TestDrainZeroKeepsWebSockets(t *testing.T) {
	a := newWSBackend(t, "a")
	b := newWSBackend(t, "b")
	p := newTestProxy(t, Options{DrainTimeout: 0}, a.upstream())
	url, client := front(t, p)
	c1 := dialWS(t, url, client)
	c2 := dialWS(t, url, client)

	p.SetUpstreams([]discovery.Upstream{b.upstream()})
	eventually(t, "the drain of the removed node ends", func() bool { return stateOf(p, a.upstream().Key()) == "absent" })
	for _, c := range []*websocket.Conn{c1, c2} {
		if got, err := echo(c, "kept"); err != nil || got != "a:kept" {
			t.Fatalf("after the drain ended: got %q, %v; want the socket to a still open", got, err)
		}
	}
	c2.Close(websocket.StatusNormalClosure, "")
	eventually(t, "one socket left", func() bool { return p.WebSockets() == 1 })
	// Shutdown still ends the socket to the removed node.
	p.Close()
	waitClosed(t, c1, 5*time.Second)
	eventually(t, "no socket left", func() bool { return p.WebSockets() == 0 })
}

func TestDrainZeroForgetsNodeWhenLastSocketEnds(t *testing.T) {
	a := newWSBackend(t, "a")
	p := newTestProxy(t, Options{DrainTimeout: 0}, a.upstream())
	url, client := front(t, p)
	c := dialWS(t, url, client)
	p.SetUpstreams(nil)
	lingering := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.lingering)
	}
	eventually(t, "the removed node lingers for its socket", func() bool { return lingering() == 1 })
	c.Close(websocket.StatusNormalClosure, "")
	eventually(t, "the removed node is forgotten", func() bool { return lingering() == 0 })
}

func TestComeBackDuringDrainKeepsSockets(t *testing.T) {
	a := newWSBackend(t, "a")
	b := newWSBackend(t, "b")
	p := newTestProxy(t, Options{DrainTimeout: 200 * time.Millisecond}, a.upstream(), b.upstream())
	url, client := front(t, p)
	c := dialWS(t, url, client) // round robin: the first node
	p.SetUpstreams([]discovery.Upstream{b.upstream()})
	p.SetUpstreams([]discovery.Upstream{a.upstream(), b.upstream()})
	p.mu.Lock()
	pending := len(p.draining)
	p.mu.Unlock()
	if pending != 0 {
		t.Fatalf("drains pending after the node came back: got %d; want 0", pending)
	}
	if got := stateOf(p, a.upstream().Key()); got != "up" {
		t.Errorf("status of the node that came back: got %q; want up", got)
	}
	if got, err := echo(c, "x"); err != nil || got != "a:x" {
		t.Fatalf("node came back before its drain ended: got %q, %v; want the socket open", got, err)
	}
}

func TestCloseClosesWebSockets(t *testing.T) {
	a := newWSBackend(t, "a")
	p := newTestProxy(t, Options{DrainTimeout: time.Hour}, a.upstream())
	url, client := front(t, p)
	c1 := dialWS(t, url, client)
	c2 := dialWS(t, url, client)
	p.Close()
	waitClosed(t, c1, 5*time.Second)
	waitClosed(t, c2, 5*time.Second)
	eventually(t, "the proxy counts no socket", func() bool { return p.WebSockets() == 0 })
	if p.SetUpstreams([]discovery.Upstream{a.upstream(), newBackend(t, "b", nil).upstream()}) {
		t.Error("SetUpstreams after Close: got a change; want none")
	}
}
