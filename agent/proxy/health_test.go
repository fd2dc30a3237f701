package proxy

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestUpstreamFailWindow(t *testing.T) {
	t0 := newFakeClock().Now()
	const window = 10 * time.Second
	tests := []struct {
		name      string
		maxFails  int
		fails     []time.Duration // offsets from t0
		wantDown  []bool          // whether each fail took it down
		checkAt   time.Duration
		available bool
	}{
		{"below max_fails", 3, []time.Duration{0, time.Second}, []bool{false, false}, 2 * time.Second, true},
		{"max_fails within the window ejects", 3, []time.Duration{0, time.Second, 2 * time.Second}, []bool{false, false, true}, 11 * time.Second, false},
		{"back after fail_timeout", 3, []time.Duration{0, time.Second, 2 * time.Second}, []bool{false, false, true}, 12 * time.Second, true},
		{"failures spread wider than the window never eject", 2, []time.Duration{0, 11 * time.Second, 22 * time.Second, 33 * time.Second}, []bool{false, false, false, false}, 33 * time.Second, true},
		{"max_fails 1 ejects at once", 1, []time.Duration{0}, []bool{true}, 9 * time.Second, false},
		{"max_fails 0 disables passive health", 0, []time.Duration{0, 0, 0, 0}, []bool{false, false, false, false}, 0, true},
		{"failing while down does not extend the ejection", 1, []time.Duration{0, 5 * time.Second}, []bool{true, false}, 10 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := testUpstreams(1)[0]
			for i, off := range tt.fails {
				if got := u.fail(t0.Add(off), tt.maxFails, window); got != tt.wantDown[i] {
					t.Errorf("fail %d at +%v took it down: got %v; want %v", i, off, got, tt.wantDown[i])
				}
			}
			if got := u.available(t0.Add(tt.checkAt)); got != tt.available {
				t.Errorf("available at +%v: got %v; want %v", tt.checkAt, got, tt.available)
			}
			if got := u.failures.Load(); got != uint64(len(tt.fails)) {
				t.Errorf("failures counter: got %d; want %d", got, len(tt.fails))
			}
		})
	}
}

func TestUpstreamSucceedClearsFailures(t *testing.T) {
	t0 := newFakeClock().Now()
	u := testUpstreams(1)[0]
	u.fail(t0, 2, 10*time.Second)
	u.succeed()
	if u.fail(t0.Add(time.Second), 2, 10*time.Second) {
		t.Error("a failure after a success took the upstream down; want the count cleared by the success")
	}
}

// TestPassiveHealthThroughProxy ejects a node that keeps failing, keeps
// traffic away from it for fail_timeout, and takes it back afterwards.
func TestPassiveHealthThroughProxy(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	var flakyHits atomic.Int64
	flaky := newBackend(t, "flaky", func(w http.ResponseWriter, r *http.Request) {
		flakyHits.Add(1)
		if broken.Load() {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
			return
		}
		io.WriteString(w, "flaky")
	})
	good := newBackend(t, "good", nil)
	clock := newFakeClock()
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	p := newTestProxy(t, Options{
		MaxFails: 2, FailTimeout: 10 * time.Second, RetryIdempotent: true,
		Now: clock.Now, Metrics: m, Registerer: reg,
	}, flaky.upstream(), good.upstream())
	url, c := front(t, p)
	flakyKey := flaky.upstream().Key()

	for i := range 10 {
		if status, body, _ := get(t, c, url+"/", nil); status != http.StatusOK || body != "good" {
			t.Fatalf("request %d: got %d %q; want 200 \"good\" (failures retried on the good node)", i, status, body)
		}
	}
	if got := flakyHits.Load(); got != 2 {
		t.Errorf("requests that reached the failing node: got %d; want 2 (max_fails), then ejected", got)
	}
	if got := testutil.ToFloat64(m.ejections.WithLabelValues(flakyKey)); got != 1 {
		t.Errorf("flowgate_upstream_ejections_total{upstream=%q}: got %v; want 1", flakyKey, got)
	}
	if got := stateOf(p, flakyKey); got != "ejected" {
		t.Errorf("status of the failing node: got %q; want ejected", got)
	}
	if got := p.Available(); got != 1 {
		t.Errorf("Available: got %d; want 1", got)
	}
	wantUp := `
# HELP flowgate_upstream_up 1 when the upstream takes requests, 0 while passive health ejects it or it fails its active health checks.
# TYPE flowgate_upstream_up gauge
flowgate_upstream_up{upstream="` + flakyKey + `"} 0
flowgate_upstream_up{upstream="` + good.upstream().Key() + `"} 1
`
	if err := testutil.GatherAndCompare(reg, stringsReader(wantUp), "flowgate_upstream_up"); err != nil {
		t.Error(err)
	}

	clock.Advance(9 * time.Second)
	get(t, c, url+"/", nil)
	if got := flakyHits.Load(); got != 2 {
		t.Errorf("before fail_timeout ended the node got %d requests; want still 2", got)
	}

	broken.Store(false)
	clock.Advance(time.Second)
	bodies := map[string]int{}
	for range 10 {
		_, body, _ := get(t, c, url+"/", nil)
		bodies[body]++
	}
	if bodies["flaky"] != 5 || bodies["good"] != 5 {
		t.Errorf("after fail_timeout: got %v; want 5 each (node back in rotation)", bodies)
	}
	if got := stateOf(p, flakyKey); got != "up" {
		t.Errorf("status of the recovered node: got %q; want up", got)
	}
}

func stateOf(p *Proxy, key string) string {
	for _, s := range p.Status() {
		if s.TLS && "https://"+s.Addr == key || !s.TLS && "http://"+s.Addr == key {
			return s.State
		}
	}
	return "absent"
}

// A failure counts at the time it happens, not when its attempt began: an
// upstream that fails only after longer than fail_timeout (a hung node
// behind a response timeout) is ejected all the same.
func TestPassiveHealthSlowFailure(t *testing.T) {
	clock := newFakeClock()
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		clock.Advance(20 * time.Second) // the attempt outlasts fail_timeout
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	})
	good := newBackend(t, "good", nil)
	p := newTestProxy(t, Options{MaxFails: 1, FailTimeout: 10 * time.Second, RetryIdempotent: true, Now: clock.Now},
		slow.upstream(), good.upstream())
	url, c := front(t, p)
	for range 2 { // round robin: one of the two reaches the slow node
		if status, body, _ := get(t, c, url+"/", nil); status != http.StatusOK || body != "good" {
			t.Fatalf("got %d %q; want 200 from the good node", status, body)
		}
	}
	if got := stateOf(p, slow.upstream().Key()); got != "ejected" {
		t.Errorf("a node that failed after 20 s with a 10 s fail_timeout: %q; want ejected", got)
	}
}
