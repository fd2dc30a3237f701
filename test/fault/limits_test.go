package fault

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flowgate/flowgate/agent"
	"github.com/flowgate/flowgate/test/harness"
)

// TestLimits checks the connection, WebSocket and body limits at small
// values, and prints the defaults an operator gets.
func TestLimits(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "n1")

	t.Run("max_connections", func(t *testing.T) {
		t.Parallel()
		const limit = 20
		fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}, Config: "http:\n  max_connections: 20\n"})
		held := make([]*tls.Conn, 0, limit)
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for i := range limit {
			c, err := tryDialTLS(fg, 5*time.Second)
			if err != nil {
				t.Fatalf("connection %d of %d: %v", i+1, limit, err)
			}
			held = append(held, c)
		}
		// One more connects (the kernel's backlog) but is not accepted.
		extra := make(chan error, 1)
		var extraConn *tls.Conn
		go func() {
			c, err := tryDialTLS(fg, 15*time.Second)
			extraConn = c
			extra <- err
		}()
		select {
		case err := <-extra:
			t.Fatalf("connection %d completed its handshake (%v) with %d open; want it to wait", limit+1, err, limit)
		case <-time.After(time.Second):
		}
		// The admin listener is not limited: health checks still answer.
		if code, _ := fg.AdminGet("/readyz"); code != http.StatusOK {
			t.Errorf("admin /readyz with the HTTPS listener full: got %d; want 200", code)
		}
		start := time.Now()
		held[0].Close()
		held = held[1:]
		select {
		case err := <-extra:
			if err != nil {
				t.Fatalf("the waiting connection after one closed: %v", err)
			}
			extraConn.Close()
		case <-time.After(5 * time.Second):
			t.Fatalf("the waiting connection was not accepted within 5s of one closing")
		}
		harness.Figure(t, "http.max_connections %d: connection %d waits in the backlog (no handshake); accepted %v after one closes; admin listener unaffected",
			limit, limit+1, time.Since(start).Round(time.Millisecond))
	})

	t.Run("max_websockets", func(t *testing.T) {
		t.Parallel()
		const limit = 3
		fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}, Config: "http:\n  max_websockets: 3\n"})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var open []*websocket.Conn
		defer func() {
			for _, c := range open {
				c.CloseNow()
			}
		}()
		for i := range limit {
			c, _, err := dialWSCookie(ctx, fg, "/ws", nil)
			if err != nil {
				t.Fatalf("WebSocket %d of %d: %v", i+1, limit, err)
			}
			open = append(open, c)
		}
		_, resp, err := dialWSCookie(ctx, fg, "/ws", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			code := 0
			if resp != nil {
				code = resp.StatusCode
			}
			t.Fatalf("WebSocket %d: got status %d, %v; want 503", limit+1, code, err)
		}
		if ra := resp.Header.Get("Retry-After"); ra == "" {
			t.Errorf("503 for the extra WebSocket: no Retry-After; want one")
		}
		// Plain requests are not WebSockets and still pass.
		if r, _ := fg.Get("/headers"); r.StatusCode != http.StatusOK {
			t.Errorf("a plain request at the WebSocket limit: got %d; want 200", r.StatusCode)
		}
		open[0].Close(websocket.StatusNormalClosure, "")
		open = open[1:]
		var c *websocket.Conn
		if !harness.Poll(5*time.Second, func() bool {
			c, _, err = dialWSCookie(ctx, fg, "/ws", nil)
			return err == nil
		}) {
			t.Fatalf("a WebSocket after one closed: %v; want it accepted", err)
		}
		open = append(open, c)
		harness.Figure(t, "http.max_websockets %d: WebSocket %d gets 503 with Retry-After %s; a slot frees when one closes", limit, limit+1, resp.Header.Get("Retry-After"))
	})

	t.Run("max_body_bytes", func(t *testing.T) {
		t.Parallel()
		const limit = 1024
		// The hand-written upstream records the size of every body it
		// receives whole.
		up := startRawUpstream(t)
		fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{up.Addr}, Config: "http:\n  max_body_bytes: 1024\n"})
		h1TLS := fg.TLS.Clone()
		h1TLS.NextProtos = []string{"http/1.1"}
		h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: h1TLS, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, Timeout: 10 * time.Second}
		tests := []struct {
			name    string
			client  *http.Client
			size    int
			chunked bool
			want    int
		}{
			{"at the limit", fg.Client, limit, false, http.StatusOK},
			{"over, Content-Length, h2", fg.Client, limit + 1, false, http.StatusRequestEntityTooLarge},
			{"over, Content-Length, HTTP/1.1", h1, 4 * limit, false, http.StatusRequestEntityTooLarge},
			{"over, chunked, HTTP/1.1", h1, 4 * limit, true, http.StatusRequestEntityTooLarge},
			{"over, no length, h2", fg.Client, 4 * limit, true, http.StatusRequestEntityTooLarge},
		}
		for _, tt := range tests {
			body := bytes.Repeat([]byte("b"), tt.size)
			var rd io.Reader = bytes.NewReader(body)
			if tt.chunked {
				rd = io.MultiReader(rd) // hides the length: chunked or no content-length
			}
			up.resetLog()
			req, err := http.NewRequest(http.MethodPost, fg.URL("/upload"), rd)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s: got status %d; want %d", tt.name, resp.StatusCode, tt.want)
			}
			got := up.bodySizes()
			switch {
			case tt.want == http.StatusOK && (len(got) != 1 || got[0] != int64(tt.size)):
				t.Errorf("%s: the upstream received bodies of %v bytes; want one of %d", tt.name, got, tt.size)
			case tt.want != http.StatusOK && len(got) != 0:
				t.Errorf("%s: the upstream received whole bodies of %v bytes; want none", tt.name, got)
			}
		}
		harness.Figure(t, "http.max_body_bytes %d: a %d-byte body reaches the upstream whole; larger bodies get 413 with Content-Length, chunked or HTTP/2 without a length", limit, limit)
	})

	t.Run("defaults", func(t *testing.T) {
		d := agent.Default().HTTP
		if d.MaxConnections == 0 || d.MaxWebSockets == 0 || d.ReadHeaderTimeout == 0 || d.MaxHeaderBytes == 0 {
			t.Errorf("default limits: got %+v; want connections, WebSockets, header timeout and header size bounded", d)
		}
		harness.Figure(t, "defaults: http.max_connections %d per listener, http.max_websockets %d, http.max_header_bytes %d, http.read_header_timeout %v, http.idle_timeout %v, http.max_body_bytes %d (0 = unlimited), upstreams.response_header_timeout %v",
			d.MaxConnections, d.MaxWebSockets, d.MaxHeaderBytes, d.ReadHeaderTimeout, d.IdleTimeout, d.MaxBodyBytes, agent.Default().Upstreams.ResponseHeaderTimeout)
	})
}
