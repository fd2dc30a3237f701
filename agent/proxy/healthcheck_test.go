package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckStateRecord(t *testing.T) {
	h := HealthCheck{Fails: 2, Passes: 3}
	fail := errors.New("status 503")
	var s checkState
	for i, step := range []struct {
		err         error
		wantFlip    bool
		wantFailing bool
	}{
		{nil, false, false},
		{fail, false, false},
		{nil, false, false}, // a pass between two failures: not in a row
		{fail, false, false},
		{fail, true, true}, // the second in a row
		{fail, false, true},
		{nil, false, true},
		{nil, false, true},
		{fail, false, true}, // a failure between passes
		{nil, false, true},
		{nil, false, true},
		{nil, true, false}, // the third pass in a row
	} {
		if got := s.record(step.err, h); got != step.wantFlip || s.failing != step.wantFailing {
			t.Fatalf("step %d (err %v): flipped %v, failing %v; want %v, %v", i, step.err, got, s.failing, step.wantFlip, step.wantFailing)
		}
	}
	if s.last != "status 503" {
		t.Errorf("last failure: got %q; want %q", s.last, "status 503")
	}
}

// checkedBackend is a backend whose /health answers with status (200 to
// start with) and counts the checks, which must carry flowgate's
// User-Agent.
type checkedBackend struct {
	*backend
	status atomic.Int64
	checks atomic.Int64
	badUA  atomic.Value // string
}

func newCheckedBackend(t *testing.T, name string) *checkedBackend {
	cb := &checkedBackend{}
	cb.status.Store(http.StatusOK)
	cb.backend = newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			cb.checks.Add(1)
			if ua := r.UserAgent(); ua != checkUserAgent {
				cb.badUA.Store(ua)
			}
			w.WriteHeader(int(cb.status.Load()))
			return
		}
		w.Write([]byte(name))
	})
	return cb
}

func checkStateOf(p *Proxy, addr string) (state, health string) {
	for _, s := range p.Status() {
		if s.Addr == addr {
			return s.State, s.Health
		}
	}
	return "", ""
}

// A node whose health check fails Fails times in a row takes no requests;
// once it passes Passes times in a row, it takes them again.
func TestHealthCheckTakesAFailingNodeOut(t *testing.T) {
	a, b := newCheckedBackend(t, "a"), newCheckedBackend(t, "b")
	var logs lockedBuffer
	hc := HealthCheck{Path: "/health", Interval: 30 * time.Millisecond, Timeout: time.Second, Fails: 2, Passes: 2}
	m := NewMetrics(nil)
	p := newTestProxy(t, Options{HealthCheck: hc, Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, a.upstream(), b.upstream())
	url, client := front(t, p)
	eventually(t, "both nodes checked", func() bool { return a.checks.Load() > 0 && b.checks.Load() > 0 })
	if st, h := checkStateOf(p, b.upstream().Addr); st != "up" || h != "passing" {
		t.Fatalf("b while its checks pass: state %q, health %q; want up, passing", st, h)
	}

	b.status.Store(http.StatusServiceUnavailable)
	eventually(t, "b taken out", func() bool { st, _ := checkStateOf(p, b.upstream().Addr); return st == "unhealthy" })
	for i := range 10 {
		if _, body, _ := get(t, client, url+"/", nil); body != "a" {
			t.Fatalf("request %d with b failing its checks: answered by %q; want a", i, body)
		}
	}
	if got := logs.String(); !strings.Contains(got, "upstream failed its health checks") || !strings.Contains(got, "status 503") {
		t.Errorf("log: got %q; want the node taken out, with the status", got)
	}
	for _, s := range p.Status() {
		if s.Addr == b.upstream().Addr && (s.Health != "failing" || s.LastCheckError != "status 503") {
			t.Errorf("/status for b: health %q, last error %q; want failing, status 503", s.Health, s.LastCheckError)
		}
	}
	if got := gaugeValue(t, m.checks.WithLabelValues(b.upstream().Key(), "fail")); got < 2 {
		t.Errorf("flowgate_upstream_health_checks_total{result=fail} for b: got %v; want at least 2", got)
	}
	if got := gaugeValue(t, m.checks.WithLabelValues(a.upstream().Key(), "pass")); got < 1 {
		t.Errorf("flowgate_upstream_health_checks_total{result=pass} for a: got %v; want at least 1", got)
	}

	b.status.Store(http.StatusOK)
	eventually(t, "b back", func() bool { st, _ := checkStateOf(p, b.upstream().Addr); return st == "up" })
	seen := map[string]bool{}
	for range 10 {
		_, body, _ := get(t, client, url+"/", nil)
		seen[body] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("answers once b passes again: got %v; want both nodes", seen)
	}
	if ua := a.badUA.Load(); ua != nil {
		t.Errorf("a health check's User-Agent: got %q; want %q", ua, checkUserAgent)
	}
}

// A check that gets no answer within Timeout fails.
func TestHealthCheckTimeout(t *testing.T) {
	a := newCheckedBackend(t, "a")
	release := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte("slow"))
	})
	defer close(release)
	hc := HealthCheck{Path: "/health", Interval: 20 * time.Millisecond, Timeout: 50 * time.Millisecond, Fails: 1, Passes: 1}
	p := newTestProxy(t, Options{HealthCheck: hc}, a.upstream(), slow.upstream())
	eventually(t, "the slow node taken out", func() bool { st, _ := checkStateOf(p, slow.upstream().Addr); return st == "unhealthy" })
	for _, s := range p.Status() {
		if s.Addr == slow.upstream().Addr && !strings.Contains(s.LastCheckError, "no answer within 50ms") {
			t.Errorf("last check error: got %q; want the timeout named", s.LastCheckError)
		}
	}
}

// When every node fails its checks, the checks are ignored: a wrong check
// path must not turn every request away.
func TestHealthCheckIgnoredWhenEveryNodeFails(t *testing.T) {
	a, b := newCheckedBackend(t, "a"), newCheckedBackend(t, "b")
	var logs lockedBuffer
	hc := HealthCheck{Path: "/health", Interval: 20 * time.Millisecond, Timeout: time.Second, Fails: 1, Passes: 1}
	p := newTestProxy(t, Options{HealthCheck: hc, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, a.upstream(), b.upstream())
	url, client := front(t, p)
	b.status.Store(http.StatusNotFound)
	eventually(t, "b taken out", func() bool { st, _ := checkStateOf(p, b.upstream().Addr); return st == "unhealthy" })
	a.status.Store(http.StatusNotFound)
	eventually(t, "the checks ignored", func() bool { return strings.Contains(logs.String(), "every upstream fails its health checks") })
	for _, n := range []*checkedBackend{a, b} {
		if st, h := checkStateOf(p, n.upstream().Addr); st != "up" || h != "failing" {
			t.Errorf("%s with every node failing: state %q, health %q; want up, failing", n.name, st, h)
		}
	}
	seen := map[string]bool{}
	for range 10 {
		code, body, _ := get(t, client, url+"/", nil)
		if code != http.StatusOK {
			t.Fatalf("with every node failing its checks: got %d; want 200 from a node", code)
		}
		seen[body] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("answers with the checks ignored: got %v; want both nodes", seen)
	}
	a.status.Store(http.StatusOK)
	eventually(t, "b out again once a passes", func() bool { st, _ := checkStateOf(p, b.upstream().Addr); return st == "unhealthy" })
}

// Turning the checks off (a reload) brings back the nodes they took out at
// once, not at the next check an interval later; turning them on again
// starts them at once.
func TestHealthCheckOffAndOn(t *testing.T) {
	a, b := newCheckedBackend(t, "a"), newCheckedBackend(t, "b")
	b.status.Store(http.StatusServiceUnavailable)
	hc := HealthCheck{Path: "/health", Interval: time.Hour, Timeout: time.Second, Fails: 1, Passes: 1}
	p := newTestProxy(t, Options{HealthCheck: hc}, a.upstream(), b.upstream())
	eventually(t, "b taken out by the first round", func() bool { st, _ := checkStateOf(p, b.upstream().Addr); return st == "unhealthy" })
	p.SetOptions(Options{})
	eventually(t, "b back with the checks off", func() bool { st, h := checkStateOf(p, b.upstream().Addr); return st == "up" && h == "" })
	n := b.checks.Load()
	time.Sleep(100 * time.Millisecond)
	if got := b.checks.Load(); got != n {
		t.Errorf("checks sent with the checks off: %d", got-n)
	}
	p.SetOptions(Options{HealthCheck: hc})
	eventually(t, "b out again with the checks on", func() bool { st, _ := checkStateOf(p, b.upstream().Addr); return st == "unhealthy" })
}
