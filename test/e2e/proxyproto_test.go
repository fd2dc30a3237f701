package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flowgate/flowgate/test/harness"
)

// startHAProxy runs HAProxy in TCP mode on frontend, passing connections to
// backend with a PROXY protocol version 2 header (send-proxy-v2), as a TCP
// load balancer in front of flowgate does.
func startHAProxy(t *testing.T, frontend, backend string) {
	t.Helper()
	bin := harness.RequireTool(t, "haproxy")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	conf := fmt.Sprintf(`global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind %s
  default_backend be
backend be
  server flowgate %s send-proxy-v2
`, frontend, backend)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting haproxy: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", frontend); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening on %s after 10 s:\n%s", frontend, out.String())
		}
	}
}

// TestProxyProtocolBehindHAProxy: flowgate behind HAProxy in TCP mode with
// send-proxy-v2, listen.proxy_protocol_from naming HAProxy's address. curl
// connects to HAProxy from 127.0.0.2; the node sees 127.0.0.2 as the
// client, not HAProxy's 127.0.0.1, over HTTP/1.1 and HTTP/2. A WebSocket
// through HAProxy echoes before and after it idles. curl from 127.0.0.3
// straight to flowgate is served as it is; a connection from HAProxy's
// address without a header is dropped, with a log line that says why.
func TestProxyProtocolBehindHAProxy(t *testing.T) {
	t.Parallel()
	n := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{n.Addr},
		Config:    "listen:\n  proxy_protocol_from: [127.0.0.1]\nlog:\n  access_log: true\n",
	})
	front := harness.FreePort(t)
	startHAProxy(t, front, fg.HTTPS)
	ca := caFile(t, fg)
	_, port, _ := net.SplitHostPort(front)

	for _, proto := range []string{"--http1.1", "--http2"} {
		body := curl(t, "--cacert", ca, proto, "--interface", "127.0.0.2",
			"--resolve", "localhost:"+port+":127.0.0.1", "https://localhost:"+port+"/headers")
		h := decodeHeaders(t, body)
		if got := h.Headers["X-Forwarded-For"]; len(got) != 1 || got[0] != "127.0.0.2" {
			t.Errorf("%s through HAProxy: the node saw X-Forwarded-For %q; want [127.0.0.2], the client", proto, got)
		}
		if got := h.Headers["X-Real-Ip"]; len(got) != 1 || got[0] != "127.0.0.2" {
			t.Errorf("%s through HAProxy: the node saw X-Real-Ip %q; want [127.0.0.2]", proto, got)
		}
	}

	// A WebSocket through HAProxy, idle long enough for its tunnel to wait
	// on the socket under the header's connection.
	tc := fg.TLS.Clone()
	tc.NextProtos = []string{"http/1.1"}
	tc.ServerName = "localhost"
	local := &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	wsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: tc,
		DialContext: (&net.Dialer{LocalAddr: local}).DialContext}}
	defer wsClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+front+"/ws", &websocket.DialOptions{HTTPClient: wsClient, Host: "localhost:" + port})
	if err != nil {
		t.Fatalf("WebSocket through HAProxy: %v", err)
	}
	defer ws.CloseNow()
	for i, msg := range []string{"before idling", "after idling"} {
		if i > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("WebSocket write %q: %v", msg, err)
		}
		if _, got, err := ws.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("WebSocket echo of %q: got %q, %v", msg, got, err)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// Not a listed balancer: no header is read, and the peer is the client.
	body := curl(t, "--cacert", ca, "--interface", "127.0.0.3", fg.URL("/headers"))
	if got := decodeHeaders(t, body).Headers["X-Forwarded-For"]; len(got) != 1 || got[0] != "127.0.0.3" {
		t.Errorf("straight from 127.0.0.3: X-Forwarded-For %q; want [127.0.0.3]", got)
	}

	// From the balancer's address without a header: dropped.
	mark := fg.Mark()
	bin := harness.RequireTool(t, "curl")
	_, errOut, code := runTool(t, "", bin, "-sS", "--max-time", "10", "--cacert", ca, "--interface", "127.0.0.1", fg.URL("/headers"))
	if code == 0 {
		t.Error("curl from the balancer's address without a header was served; want the connection dropped")
	}
	line, err := fg.WaitLog(mark, "no valid PROXY protocol header", 5*time.Second)
	if err != nil {
		t.Fatalf("%v (curl: %s)", err, errOut)
	}
	if !strings.Contains(line, "does not start with one") {
		t.Errorf("log line %q: want the reason", line)
	}
}
