package fault

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestOversizedRequests sends request lines and headers beyond the default
// http.max_header_bytes (64 KiB) over raw TLS. net/http answers 431 for
// both: it reads the request line and the headers under one limit, so a
// long URI gets 431, not the 414 NGINX sends. The process stays healthy
// and its memory bounded after a burst of them.
func TestOversizedRequests(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	pid := pidOf(t, fg.StateDir)

	const over, under = 80 << 10, 48 << 10
	tests := []struct {
		name string
		raw  string
		want int
	}{
		{"one header over the limit", "GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + strings.Repeat("a", over) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"many headers over the limit", "GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + strings.Repeat("X-Many: aaaaaaaaaaaaaaaa\r\n", over/26) + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"request line over the limit", "GET /headers?q=" + strings.Repeat("a", over) + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"one header under the limit", "GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + strings.Repeat("a", under) + "\r\n\r\n", http.StatusOK},
		{"request line under the limit", "GET /headers?q=" + strings.Repeat("a", under) + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", http.StatusOK},
	}
	var answers []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resps := exchange(t, fg, tt.raw, 10*time.Second)
			if len(resps) != 1 {
				t.Fatalf("got %d responses; want 1", len(resps))
			}
			if got := resps[0].StatusCode; got != tt.want {
				t.Errorf("got status %d; want %d", got, tt.want)
			}
			answers = append(answers, fmt.Sprintf("%s (%d bytes): %d", tt.name, len(tt.raw), resps[0].StatusCode))
		})
	}
	harness.Figure(t, "oversized requests, default http.max_header_bytes 64 KiB:\n%s", strings.Join(answers, "\n"))

	// A burst of oversized requests, 8 at a time, must not grow the
	// process: each is refused after at most the limit has been read.
	rssBefore := rssKB(t, pid)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	const burst = 200
	codes := make([]int, burst)
	for i := range burst {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if resps, err := tryExchange(fg, tests[0].raw, 10*time.Second); err == nil && len(resps) == 1 {
				codes[i] = resps[0].StatusCode
			}
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("burst request %d: got status %d; want 431", i, c)
			break
		}
	}
	rssAfter := rssKB(t, pid)
	if grew := rssAfter - rssBefore; grew > 32<<10 {
		t.Errorf("RSS grew by %d KiB over %d oversized requests; want under 32 MiB", grew, burst)
	}
	resp, _ := fg.Get("/headers")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a normal request after the burst: got status %d; want 200", resp.StatusCode)
	}
	harness.Figure(t, "oversized requests: %d requests of %d KiB headers refused with 431; flowgate RSS %d KiB before, %d KiB after",
		burst, over>>10, rssBefore, rssAfter)
}
