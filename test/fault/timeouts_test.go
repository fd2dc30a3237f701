package fault

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestStalledResponseBody: an upstream that sends headers and part of the
// body, then goes silent, must not hold the client forever: after
// upstreams.read_timeout the response is cut, and a healthy client is served
// meanwhile.
func TestStalledResponseBody(t *testing.T) {
	t.Parallel()
	raw := startRawUpstream(t)
	stub := harness.StartStub(t, "stub")
	fg := harness.StartFlowgate(t, harness.Options{
		Config:    brokenUpstreamConfig + "  read_timeout: 1s\n",
		Upstreams: []string{raw.Addr, stub.Addr},
	})
	cookie := stickyCookie(t, fg, "fault")

	req, _ := http.NewRequest(http.MethodGet, fg.URL(pathStall), nil)
	req.AddCookie(cookie)
	start := time.Now()
	var n int64
	resp, err := fg.Client.Do(req)
	if err == nil {
		// Headers arrived (flushed with part of the body); the rest must be
		// cut, not hang.
		n, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("stalled body: read %d bytes and a clean end; want the response cut", n)
		}
	}
	// Over HTTP/2 the headers may still sit in flowgate's write buffer when
	// the timeout cuts the stream: then Do itself fails. Either way the
	// client must learn within about read_timeout.
	took := time.Since(start)
	if n >= resetPromised {
		t.Fatalf("stalled body: read %d bytes; want fewer than the %d promised", n, resetPromised)
	}
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("stalled body cut after %v; want about read_timeout (1s)", took)
	}
	if code, _ := fg.Get("/headers"); code.StatusCode != http.StatusOK {
		t.Errorf("healthy request after the stall: got %d; want 200", code.StatusCode)
	}
	harness.Figure(t, "stalled upstream body: %d of %d bytes relayed, response cut after %v (read_timeout 1s): %v", n, resetPromised, took.Round(time.Millisecond), err)
}

// TestRateLimit: with http.rate_limit set, a client over its burst gets 429
// with Retry-After and the upstream never sees those requests; another
// client (told apart by X-Forwarded-For through a trusted proxy) is served.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "stub")
	fg := harness.StartFlowgate(t, harness.Options{
		Args:      []string{"--trusted-proxy", "127.0.0.1/32"},
		Config:    "http:\n  rate_limit:\n    requests_per_second: 2\n    burst: 5\n",
		Upstreams: []string{stub.Addr},
	})
	get := func(client string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, fg.URL("/headers"), nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := fg.Client.Do(req)
		if err != nil {
			t.Fatalf("GET as %s: %v", client, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	codes := make([]int, 0, 8)
	var limited *http.Response
	for range 8 {
		resp := get("203.0.113.7")
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && limited == nil {
			limited = resp
		}
	}
	ok := 0
	for _, c := range codes {
		if c == http.StatusOK {
			ok++
		}
	}
	if ok < 5 || ok > 6 || limited == nil {
		t.Fatalf("8 quick requests from one client: statuses %v; want the burst of 5 (or 6 with a refill) served, then 429", codes)
	}
	if ra, err := strconv.Atoi(limited.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("429 Retry-After = %q; want a whole number of seconds >= 1", limited.Header.Get("Retry-After"))
	}
	if resp := get("198.51.100.9"); resp.StatusCode != http.StatusOK {
		t.Errorf("another client: got %d; want 200", resp.StatusCode)
	}
	harness.Figure(t, "rate limit 2/s burst 5: 8 quick requests from one client: %s", fmt.Sprint(codes))
}
