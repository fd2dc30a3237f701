package proxy

import (
	"math"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

func TestUpstreamShare(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	const ramp = 60 * time.Second
	for _, tt := range []struct {
		name      string
		starts    []time.Time // warmFrom calls, in order
		now       time.Time
		slowStart time.Duration
		want      float64
	}{
		{"no slow start", []time.Time{t0}, t0, 0, 1},
		{"never joined a running set", nil, t0, ramp, 1},
		{"just joined", []time.Time{t0}, t0, ramp, minWarmShare},
		{"a moment after joining", []time.Time{t0}, t0.Add(time.Second), ramp, minWarmShare},
		{"half way", []time.Time{t0}, t0.Add(ramp / 2), ramp, 0.5},
		{"over", []time.Time{t0}, t0.Add(ramp), ramp, 1},
		// An ejection that ends after a start that came in between: the
		// later one counts.
		{"back from passive ejection", []time.Time{t0.Add(time.Hour), t0}, t0.Add(time.Hour + ramp/4), ramp, 0.25},
		{"joined again long after", []time.Time{t0, t0.Add(time.Hour)}, t0.Add(time.Hour + ramp*3/4), ramp, 0.75},
	} {
		u := &upstream{}
		for _, start := range tt.starts {
			u.warmFrom(start)
		}
		if got := u.share(tt.now, tt.slowStart); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: share %v; want %v", tt.name, got, tt.want)
		}
	}
}

// pickShares picks n times and returns each upstream's part of the picks.
func pickShares(s *upstreamSet, o pickOptions, n int) map[*upstream]float64 {
	count := map[*upstream]float64{}
	for range n {
		count[s.pick(&o)]++
	}
	for u := range count {
		count[u] /= float64(n)
	}
	return count
}

// Round robin hands a warming upstream its share of its turns; the turns
// it passes on go to the others. Least connections counts it as one of a
// smaller weight. With every other upstream unavailable it still takes
// every request.
func TestSlowStartPicks(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	const ramp = time.Minute
	a, b, c := &upstream{key: "a"}, &upstream{key: "b"}, &upstream{key: "c"}
	s := newUpstreamSet([]*upstream{a, b, c}, []int{1, 1, 1})
	for _, tt := range []struct {
		since time.Duration // since b joined
		want  float64       // b's part of the picks
	}{
		{0, minWarmShare / 3},
		{ramp / 2, 0.5 / 3},
		{ramp, 1.0 / 3},
	} {
		b.warmStart.Store(now.Add(-tt.since).UnixNano())
		got := pickShares(s, pickOptions{balance: RoundRobin, now: now, slowStart: ramp}, 30000)
		if math.Abs(got[b]-tt.want) > 0.015 {
			t.Errorf("round robin, %v after b joined: b took %.3f of the picks; want about %.3f", tt.since, got[b], tt.want)
		}
		if math.Abs(got[a]-got[c]) > 0.03 {
			t.Errorf("round robin, %v after b joined: a took %.3f and c %.3f; want b's turns shared evenly", tt.since, got[a], got[c])
		}
	}
	b.warmStart.Store(now.UnixNano())
	if got := pickShares(s, pickOptions{balance: RoundRobin, now: now}, 3000); math.Abs(got[b]-1.0/3) > 0.01 {
		t.Errorf("without slow start: b took %.3f; want a third", got[b])
	}
	if got := pickShares(s, pickOptions{balance: RoundRobin, now: now, slowStart: ramp, tried: []*upstream{a, c}}, 100); got[b] != 1 {
		t.Errorf("warming b alone eligible: it took %.2f of the picks; want all", got[b])
	}

	// Least connections with nothing in flight, as when requests are few:
	// b takes its turn with the probability of its share.
	// Its passed turns are shared evenly; once it bore half again its
	// share, because a passed turn moved the order on by two.
	for range 3 {
		got := pickShares(s, pickOptions{balance: LeastConn, now: now, slowStart: ramp}, 30000)
		if math.Abs(got[b]-minWarmShare/3) > 0.006 {
			t.Errorf("least_conn, nothing in flight, b just joined: b took %.4f of the picks; want about %.4f", got[b], minWarmShare/3)
		}
		if math.Abs(got[a]-got[c]) > 0.03 {
			t.Errorf("least_conn, nothing in flight, b just joined: a took %.3f and c %.3f; want b's turns shared evenly", got[a], got[c])
		}
	}
	if got := pickShares(s, pickOptions{balance: LeastConn, now: now}, 3000); math.Abs(got[b]-1.0/3) > 0.02 {
		t.Errorf("least_conn, nothing in flight, without slow start: b took %.3f; want a third", got[b])
	}

	// Least connections: b has fewer requests in flight, but at a tenth of
	// its weight it counts as the busiest.
	a.inflight.Store(2)
	b.inflight.Store(1)
	c.inflight.Store(3)
	defer func() { a.inflight.Store(0); b.inflight.Store(0); c.inflight.Store(0) }()
	if u := s.pick(&pickOptions{balance: LeastConn, now: now, slowStart: ramp}); u != a {
		t.Errorf("least_conn, b warming: picked %s; want a", u.key)
	}
	if u := s.pick(&pickOptions{balance: LeastConn, now: now}); u != b {
		t.Errorf("least_conn without slow start: picked %s; want b", u.key)
	}
}

// An upstream that joins a running set starts slow; the first set, and an
// upstream that stays, do not. Coming back from passive ejection, or
// passing its health checks again, starts a slow start too. /status shows
// the share.
func TestSlowStartProxy(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	const ramp = 100 * time.Second
	ua := discovery.Upstream{Addr: "10.0.0.1:8090", Weight: 1}
	ub := discovery.Upstream{Addr: "10.0.0.2:8090", Weight: 1}
	uc := discovery.Upstream{Addr: "10.0.0.3:8090", Weight: 1}
	p := newTestProxy(t, Options{SlowStart: ramp, Now: clock, MaxFails: 1, FailTimeout: 10 * time.Second}, ua, ub)
	shares := func() map[string]float64 {
		out := map[string]float64{}
		for _, s := range p.Status() {
			out[s.Addr] = s.SlowStartShare
		}
		return out
	}
	if got := shares(); got[ua.Addr] != 0 || got[ub.Addr] != 0 {
		t.Fatalf("first set: slow start shares %v; want none", got)
	}
	p.SetUpstreams([]discovery.Upstream{ua, ub, uc})
	advance(ramp / 4)
	if got := shares(); got[uc.Addr] != 0.25 || got[ua.Addr] != 0 || got[ub.Addr] != 0 {
		t.Fatalf("a quarter after c joined: shares %v; want c at 0.25, the others whole", got)
	}
	advance(ramp)
	if got := shares(); got[uc.Addr] != 0 {
		t.Fatalf("after the slow start: c's share %v; want whole", got[uc.Addr])
	}

	// Passive ejection of b, then its return.
	var b *upstream
	for _, u := range p.set.Load().list {
		if u.key == ub.Key() {
			b = u
		}
	}
	if !b.fail(clock(), 1, 10*time.Second) {
		t.Fatal("b was not ejected")
	}
	advance(10*time.Second + ramp/2)
	if got := shares(); got[ub.Addr] != 0.5 {
		t.Errorf("half the slow start after b's ejection ended: share %v; want 0.5", got[ub.Addr])
	}
	advance(ramp)

	// Active health: b fails its checks, then passes them again.
	h := HealthCheck{Path: "/health", Interval: time.Second, Timeout: time.Second, Fails: 1, Passes: 1}
	set := p.set.Load()
	b.mu.Lock()
	b.check.failing = true
	b.mu.Unlock()
	p.applyChecks(set, p.options(), h)
	advance(ramp)
	b.mu.Lock()
	b.check.failing = false
	b.mu.Unlock()
	p.applyChecks(set, p.options(), h)
	advance(ramp / 5)
	if got := shares(); got[ub.Addr] != 0.2 {
		t.Errorf("a fifth of the slow start after b passed its checks again: share %v; want 0.2", got[ub.Addr])
	}
	p.applyChecks(set, p.options(), h) // still passing: no new start
	advance(ramp)
	if got := shares(); got[ub.Addr] != 0 {
		t.Errorf("after the slow start: b's share %v; want whole", got[ub.Addr])
	}

	// Every node fails: the checks are ignored and the nodes let back in,
	// but none of them passed, so none starts slow.
	for _, u := range set.list {
		u.mu.Lock()
		u.check.failing = u.key != ua.Key()
		u.mu.Unlock()
	}
	p.applyChecks(set, p.options(), h) // b and c out
	advance(ramp)
	for _, u := range set.list {
		u.mu.Lock()
		u.check.failing = true
		u.mu.Unlock()
	}
	p.applyChecks(set, p.options(), h) // all fail: all in
	if got := shares(); got[ub.Addr] != 0 || got[uc.Addr] != 0 {
		t.Errorf("every node failing, the checks ignored: shares %v; want none warming", got)
	}

	// Checks turned off while b is out: it comes back slow.
	for _, u := range set.list {
		u.mu.Lock()
		u.check.failing = u.key == ub.Key()
		u.mu.Unlock()
	}
	p.applyChecks(set, p.options(), h) // b out
	advance(ramp)
	p.mu.Lock()
	p.clearChecksLocked()
	p.mu.Unlock()
	advance(ramp / 2)
	if got := shares(); got[ub.Addr] != 0.5 || got[ua.Addr] != 0 {
		t.Errorf("half the slow start after the checks were turned off with b out: shares %v; want b at 0.5", got)
	}
}

// End to end through the proxy: right after a node joins, it takes a
// tenth of its share of real requests.
func TestSlowStartRequests(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	p := newTestProxy(t, Options{SlowStart: time.Hour}, a.upstream())
	url, client := front(t, p)
	p.SetUpstreams([]discovery.Upstream{a.upstream(), b.upstream()})
	const n = 400
	for range n {
		resp, err := client.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// b's expected part: a tenth of a half, 20 of 400.
	if hb := b.hits.Load(); hb < 5 || hb > 45 {
		t.Errorf("b, just joined with a slow start of an hour, took %d of %d requests; want about 20", hb, n)
	}
}
