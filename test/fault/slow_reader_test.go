package fault

import (
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flowgate/flowgate/test/harness"
)

// TestClientThatStopsReading: clients ask for a 1 GiB download and read
// none of it (a slow-read attack), over HTTP/1.1 (the fast path) and
// HTTP/2. With http.send_timeout 1s flowgate cuts each once a write has
// waited that long, and its upstream request with it. Before, each held
// its connection, a goroutine and a node's connection, streaming, for as
// long as the client kept its socket open.
func TestClientThatStopsReading(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{stub.Addr},
		Config:    "http:\n  send_timeout: 1s\n",
	})
	const target = "/bytes?n=1073741824"
	start := time.Now()
	for range 3 {
		cfg := fg.TLS.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		c, err := tls.Dial("tcp", fg.HTTPS, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fg.TLS.Clone()
	cfg.NextProtos = []string{"h2"}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	for range 3 {
		resp, err := (&http.Client{Transport: tr}).Get("https://" + fg.HTTPS + target)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("got %s; want HTTP/2", resp.Proto)
		}
		defer resp.Body.Close() // never read
	}
	inFlight := func() int64 { return fg.Status().Upstreams[0].InFlight }
	var peak int64
	for time.Since(start) < 15*time.Second {
		n := inFlight()
		peak = max(peak, n)
		if peak == 6 && n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if peak != 6 || inFlight() != 0 {
		t.Fatalf("upstream requests in flight: peak %d, now %d after %v; want 6, then 0 once send_timeout (1s) passed",
			peak, inFlight(), time.Since(start).Round(time.Millisecond))
	}
	t.Logf("FIGURE: 6 clients that read nothing of a 1 GiB download (3 HTTP/1.1, 3 HTTP/2), send_timeout 1s: all cut, upstream requests released %s after they started",
		time.Since(start).Round(10*time.Millisecond))
	if resp, _ := fg.Get("/headers"); resp.StatusCode != http.StatusOK {
		t.Errorf("a normal request afterwards: got %d; want 200", resp.StatusCode)
	}
}

// TestWebSocketClientThatStopsReading: WebSocket clients send to the
// stub's echo and read none of the echoes, so flowgate's writes to them
// wait. With http.send_timeout 1s each tunnel is cut once a write has
// waited that long; before, each held its sockets and the node's for as
// long as the client kept its socket open. A quiet WebSocket, open as
// long, is left alone.
func TestWebSocketClientThatStopsReading(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{stub.Addr},
		Config:    "http:\n  send_timeout: 1s\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc := fg.TLS.Clone()
	tc.NextProtos = []string{"http/1.1"}
	wsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	dial := func() *websocket.Conn {
		c, _, err := websocket.Dial(ctx, "wss://"+fg.HTTPS+"/ws", &websocket.DialOptions{HTTPClient: wsClient})
		if err != nil {
			t.Fatalf("WebSocket: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	quiet := dial()
	echo := func(when string) {
		t.Helper()
		if err := quiet.Write(ctx, websocket.MessageText, []byte(when)); err != nil {
			t.Fatalf("the quiet WebSocket, %s: write: %v", when, err)
		}
		if _, msg, err := quiet.Read(ctx); err != nil || string(msg) != when {
			t.Fatalf("the quiet WebSocket, %s: got %q, %v; want its echo", when, msg, err)
		}
	}
	echo("before") // its write deadline is set now, and passes unused
	quietSince := time.Now()
	const floods = 3
	start := time.Now()
	wrote := make(chan error, floods)
	for range floods {
		c := dial()
		go func() {
			msg := make([]byte, 64<<10)
			var err error
			for i := 0; i < 4096 && err == nil; i++ { // up to 256 MiB
				err = c.Write(ctx, websocket.MessageBinary, msg)
			}
			wrote <- err
		}()
	}
	for range floods {
		select {
		case err := <-wrote:
			if err == nil {
				t.Fatal("a client wrote 256 MiB of echoes it never read through flowgate")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("clients that read none of their echoes still held 10 s after they started, with send_timeout 1s")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); fg.Status().WebSockets != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("/status websockets 10 s after the floods were cut: got %d; want 1, the quiet one", fg.Status().WebSockets)
		}
	}
	t.Logf("FIGURE: %d WebSocket clients that read none of their echoes, send_timeout 1s: all cut %s after they started",
		floods, time.Since(start).Round(10*time.Millisecond))
	time.Sleep(time.Until(quietSince.Add(1500 * time.Millisecond)))
	echo("after a pause longer than send_timeout")
}
