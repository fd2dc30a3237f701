package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowgate/flowgate/discovery"
)

func post(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	status, got, _ := do(t, c, req)
	return status, got
}

func TestRetryConnectFailure(t *testing.T) {
	for _, retryIdempotent := range []bool{false, true} {
		name := "retry_idempotent off"
		if retryIdempotent {
			name = "retry_idempotent on"
		}
		t.Run(name, func(t *testing.T) {
			good := newBackend(t, "good", nil)
			dead := discovery.Upstream{Addr: deadAddr(t), Weight: 1}
			m := NewMetrics(prometheus.NewRegistry())
			// Round robin starts at the first node: the dead one.
			p := newTestProxy(t, Options{RetryIdempotent: retryIdempotent, Metrics: m}, dead, good.upstream())
			url, c := front(t, p)

			status, body := post(t, c, url+"/submit", "form=1")
			if status != http.StatusOK || body != "good" {
				t.Fatalf("POST: got %d %q; want 200 \"good\" (nothing was sent to the dead node)", status, body)
			}
			if got := good.bodies; len(got) != 1 || got[0] != "form=1" {
				t.Errorf("body received by the good node: got %q; want [\"form=1\"]", got)
			}
			if got := testutil.ToFloat64(m.retries); got != 1 {
				t.Errorf("flowgate_upstream_retries_total: got %v; want 1", got)
			}
		})
	}
}

func TestRetryIdempotentAfterReset(t *testing.T) {
	tests := []struct {
		name            string
		retryIdempotent bool
		method          string
		wantStatus      int
		wantGoodHits    int64
	}{
		{"GET retried", true, http.MethodGet, http.StatusOK, 1},
		{"HEAD retried", true, http.MethodHead, http.StatusOK, 1},
		{"GET not retried when disabled", false, http.MethodGet, http.StatusBadGateway, 0},
		{"POST without a body not retried", true, http.MethodPost, http.StatusBadGateway, 0},
		{"DELETE not retried", true, http.MethodDelete, http.StatusBadGateway, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resetHits atomic.Int64
			reset := resetBackend(t, false, &resetHits)
			good := newBackend(t, "good", nil)
			p := newTestProxy(t, Options{RetryIdempotent: tt.retryIdempotent}, reset, good.upstream())
			url, c := front(t, p)
			req, _ := http.NewRequest(tt.method, url+"/", nil)
			status, body, _ := do(t, c, req)
			if status != tt.wantStatus {
				t.Fatalf("got %d %q; want %d", status, body, tt.wantStatus)
			}
			if got := resetHits.Load(); got != 1 {
				t.Errorf("requests to the resetting node: got %d; want 1", got)
			}
			if got := good.hits.Load(); got != tt.wantGoodHits {
				t.Errorf("requests to the good node: got %d; want %d", got, tt.wantGoodHits)
			}
		})
	}
}

func TestNoRetryAfterBodySent(t *testing.T) {
	var resetHits atomic.Int64
	reset := resetBackend(t, true, &resetHits)
	good := newBackend(t, "good", nil)
	p := newTestProxy(t, Options{RetryIdempotent: true}, reset, good.upstream())
	url, c := front(t, p)

	status, body := post(t, c, url+"/submit", strings.Repeat("x", 64<<10))
	if status != http.StatusBadGateway {
		t.Fatalf("POST whose body reached a node that then failed: got %d %q; want 502", status, body)
	}
	if got := good.hits.Load(); got != 0 {
		t.Errorf("the POST was repeated on another node %d times; want 0 (not idempotent, body consumed)", got)
	}
	noLeak(t, body, reset.Addr)
}

func TestMaxAttemptsBoundsRetries(t *testing.T) {
	var ups []discovery.Upstream
	for range 4 {
		ups = append(ups, discovery.Upstream{Addr: deadAddr(t), Weight: 1})
	}
	p := newTestProxy(t, Options{MaxAttempts: 2}, ups...)
	url, c := front(t, p)
	status, _, _ := get(t, c, url+"/", nil)
	if status != http.StatusServiceUnavailable {
		t.Errorf("every node refuses connections: got %d; want 503", status)
	}
	var tried uint64
	for _, s := range p.Status() {
		tried += s.Failures
	}
	if tried != 2 {
		t.Errorf("nodes tried: got %d; want 2 (max_attempts)", tried)
	}
}
