package fault

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flowgate/flowgate/test/harness"
)

// brokenUpstreamConfig pins clients with a sticky cookie so that one client
// can be sent to the broken upstream while others use both, and turns off
// what would hide a fault from the client under test: retries and passive
// ejection.
const brokenUpstreamConfig = `
upstreams:
  sticky_cookie: fgnode
  max_fails: 0
  retry_idempotent: false
  response_header_timeout: 1s
`

// stickyCookie sends GETs until node answers and returns the sticky cookie
// flowgate set for it.
func stickyCookie(t *testing.T, fg *harness.Flowgate, node string) *http.Cookie {
	t.Helper()
	for range 20 {
		resp, _ := fg.Get("/headers")
		if resp.Header.Get("X-Node") != node {
			continue
		}
		for _, c := range resp.Cookies() {
			if c.Name == "fgnode" {
				return &http.Cookie{Name: c.Name, Value: c.Value}
			}
		}
		t.Fatalf("node %s answered without a sticky cookie; headers %v", node, resp.Header)
	}
	t.Fatalf("node %s never answered 20 round-robin requests", node)
	return nil
}

// healthyLoad sends GET /headers every 20 ms until stop is closed and
// returns every status (0 for a transport error) and the errors.
func healthyLoad(c *http.Client, url string, stop <-chan struct{}) (statuses []int, errs []error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return statuses, errs
		case <-tick.C:
		}
		resp, err := c.Get(url)
		if err != nil {
			statuses, errs = append(statuses, 0), append(errs, err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
}

// TestBrokenUpstream sends one client at a time to an upstream that hangs,
// resets mid-response, answers garbage, closes at once, or drops a
// WebSocket, while another client keeps using both upstreams (a healthy stub
// and the broken one's healthy paths) and must see nothing but 200s.
func TestBrokenUpstream(t *testing.T) {
	t.Parallel()
	raw := startRawUpstream(t)
	stub := harness.StartStub(t, "stub")
	fg := harness.StartFlowgate(t, harness.Options{Config: brokenUpstreamConfig, Upstreams: []string{raw.Addr, stub.Addr}})
	faultCookie := stickyCookie(t, fg, "fault")
	stubCookie := stickyCookie(t, fg, "stub")

	healthyTr := &http.Transport{TLSClientConfig: fg.TLS.Clone(), ForceAttemptHTTP2: true}
	defer healthyTr.CloseIdleConnections()
	healthy := &http.Client{Transport: healthyTr, Timeout: 10 * time.Second}
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		statuses []int
		errs     []error
	)
	wg.Go(func() { statuses, errs = healthyLoad(healthy, fg.URL("/headers"), stop) })

	// Each broken request goes over HTTP/2 (the default client) and over
	// HTTP/1.1 (a client without ALPN h2).
	h1TLS := fg.TLS.Clone()
	h1TLS.NextProtos = []string{"http/1.1"}
	h1Tr := &http.Transport{TLSClientConfig: h1TLS, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	defer h1Tr.CloseIdleConnections()
	clients := map[string]*http.Client{
		"h2":      fg.Client,
		"http1.1": {Transport: h1Tr, Timeout: 30 * time.Second},
	}
	// send sends GET path to the broken upstream and returns the response
	// (nil when the request itself failed), its body, the error of the
	// request or of reading the body, and the time taken.
	send := func(t *testing.T, c *http.Client, path string) (*http.Response, []byte, error, time.Duration) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, fg.URL(path), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.AddCookie(faultCookie)
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, err, time.Since(start)
		}
		defer resp.Body.Close()
		body, rerr := io.ReadAll(resp.Body)
		return resp, body, rerr, time.Since(start)
	}
	get := func(t *testing.T, c *http.Client, path string) (*http.Response, time.Duration) {
		t.Helper()
		resp, _, err, d := send(t, c, path)
		if resp == nil {
			t.Fatalf("GET %s: %v; want a response from flowgate", path, err)
		}
		return resp, d
	}

	for proto, c := range clients {
		t.Run(proto, func(t *testing.T) {
			t.Run("never answers", func(t *testing.T) {
				resp, d := get(t, c, pathHang)
				if resp.StatusCode != http.StatusGatewayTimeout {
					t.Errorf("got status %d; want 504", resp.StatusCode)
				}
				if d < 900*time.Millisecond || d > 5*time.Second {
					t.Errorf("504 after %v; want about the response_header_timeout of 1s", d)
				}
				harness.Figure(t, "upstream that never answers (%s): 504 after %v (upstreams.response_header_timeout 1s)", proto, d.Round(time.Millisecond))
			})
			t.Run("resets mid-response", func(t *testing.T) {
				// The client must learn that the response broke: either the
				// request fails (HTTP/2 may reset the stream before the
				// buffered headers leave) or the body ends early with an
				// error. A complete-looking response would be a lie.
				resp, body, err, _ := send(t, c, pathReset)
				switch {
				case err == nil:
					t.Errorf("got status %d and %d bytes without an error; want the response aborted", resp.StatusCode, len(body))
				case resp == nil:
					harness.Figure(t, "upstream reset mid-response (%s): the client's request failed with %q", proto, err)
				case resp.StatusCode != http.StatusOK || len(body) >= resetPromised:
					t.Errorf("got status %d, %d bytes, then %v; want the upstream's 200 and fewer than %d bytes", resp.StatusCode, len(body), err, resetPromised)
				default:
					harness.Figure(t, "upstream reset mid-response (%s): client got status 200, %d of %d bytes, then %q", proto, len(body), resetPromised, err)
				}
			})
			t.Run("malformed response", func(t *testing.T) {
				resp, _ := get(t, c, pathMalformed)
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("got status %d; want 502", resp.StatusCode)
				}
			})
			t.Run("closes without answering", func(t *testing.T) {
				resp, _ := get(t, c, pathEOF)
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("got status %d; want 502", resp.StatusCode)
				}
			})
		})
	}

	t.Run("websocket dropped", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		good, _, err := dialWSCookie(ctx, fg, "/ws", stubCookie)
		if err != nil {
			t.Fatalf("WebSocket to the stub: %v", err)
		}
		defer good.CloseNow()
		bad, _, err := dialWSCookie(ctx, fg, pathWSDrop, faultCookie)
		if err != nil {
			t.Fatalf("WebSocket to the dropping upstream: %v; want a 101", err)
		}
		defer bad.CloseNow()
		start := time.Now()
		if err := bad.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			t.Logf("write to the dropping socket failed at once: %v", err)
		}
		_, _, rerr := bad.Read(ctx)
		d := time.Since(start)
		if rerr == nil || ctx.Err() != nil {
			t.Fatalf("read on the dropped socket: got %v after %v; want the socket closed promptly", rerr, d)
		}
		harness.Figure(t, "upstream dropped a WebSocket: the client's socket ended %v after its first frame (%q)", d.Round(time.Microsecond), errText(rerr))
		for i := range 3 {
			msg := []byte{'m', byte('0' + i)}
			if err := good.Write(ctx, websocket.MessageText, msg); err != nil {
				t.Fatalf("healthy WebSocket write after the drop: %v", err)
			}
			if _, got, err := good.Read(ctx); err != nil || string(got) != string(msg) {
				t.Fatalf("healthy WebSocket echo after the drop: got %q, %v; want %q", got, err, msg)
			}
		}
		if !harness.Poll(5*time.Second, func() bool { return fg.Status().WebSockets == 1 }) {
			t.Errorf("/status websockets: got %d; want 1 (the healthy one) after the drop", fg.Status().WebSockets)
		}
		good.Close(websocket.StatusNormalClosure, "")
	})

	close(stop)
	wg.Wait()
	bad := 0
	for _, s := range statuses {
		if s != http.StatusOK {
			bad++
		}
	}
	if bad > 0 || len(statuses) < 20 {
		t.Errorf("healthy client: %d of %d requests failed (errors %v); want all 200 and at least 20", bad, len(statuses), errs)
	}
	harness.Figure(t, "while one client hit broken upstreams, a concurrent client got %d/%d 200s", len(statuses)-bad, len(statuses))
	if pe := raw.parseErrors(); len(pe) > 0 {
		t.Errorf("the upstream could not parse what flowgate sent: %v", pe)
	}
}

// dialWSCookie opens a WebSocket through flowgate with a sticky cookie.
func dialWSCookie(ctx context.Context, fg *harness.Flowgate, path string, cookie *http.Cookie) (*websocket.Conn, *http.Response, error) {
	tc := fg.TLS.Clone()
	tc.NextProtos = []string{"http/1.1"}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	h := http.Header{}
	if cookie != nil {
		h.Set("Cookie", cookie.String())
	}
	return websocket.Dial(ctx, "wss://"+fg.HTTPS+path, &websocket.DialOptions{HTTPClient: client, HTTPHeader: h})
}

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
