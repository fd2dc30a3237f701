package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func newTestLimiter(t *testing.T, opts RateLimiterOptions) *RateLimiter {
	t.Helper()
	l, err := NewRateLimiter(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewRateLimiterRejects(t *testing.T) {
	for _, opts := range []RateLimiterOptions{
		{},
		{Rate: -1},
		{Rate: 1, Burst: -1},
		{Rate: 1, MaxClients: -1},
	} {
		if _, err := NewRateLimiter(opts); err == nil {
			t.Errorf("NewRateLimiter(%+v): got no error; want one", opts)
		}
	}
}

// TestRateLimiterBucket walks one client through a burst, the refill and
// the Retry-After hint on an injected clock.
func TestRateLimiterBucket(t *testing.T) {
	clock := newFakeClock()
	l := newTestLimiter(t, RateLimiterOptions{Rate: 2, Burst: 3, Now: clock.Now})
	const client = "192.0.2.1"
	steps := []struct {
		advance   time.Duration
		wantOK    bool
		wantRetry time.Duration
	}{
		{0, true, 0},
		{0, true, 0},
		{0, true, 0},                       // the burst of 3 is spent
		{0, false, 500 * time.Millisecond}, // one token per 500 ms at 2/s
		{250 * time.Millisecond, false, 250 * time.Millisecond},
		{250 * time.Millisecond, true, 0},
		{0, false, 500 * time.Millisecond},
		{time.Hour, true, 0}, // refilled, but never beyond the burst
		{0, true, 0},
		{0, true, 0},
		{0, false, 500 * time.Millisecond},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		ok, retry := l.Allow(client)
		if ok != s.wantOK || retry != s.wantRetry {
			t.Errorf("step %d (+%v): got %v, retry %v; want %v, retry %v", i, s.advance, ok, retry, s.wantOK, s.wantRetry)
		}
	}
}

// TestRateLimiterClientsApart checks that clients do not share buckets,
// except the addresses of one IPv6 /64.
func TestRateLimiterClientsApart(t *testing.T) {
	clock := newFakeClock()
	l := newTestLimiter(t, RateLimiterOptions{Rate: 1, Burst: 1, Now: clock.Now})
	tests := []struct {
		addr string
		want bool
	}{
		{"192.0.2.1", true},
		{"192.0.2.1", false},
		{"192.0.2.2", true},
		{"::ffff:192.0.2.2", false}, // the same IPv4 client, mapped
		{"2001:db8:1:2::1", true},
		{"2001:db8:1:2:ffff::9", false}, // same /64
		{"2001:db8:1:3::1", true},       // another /64
		{"fe80::1%eth0", true},
		{"fe80::2", false}, // zones do not make clients apart; same /64
	}
	for _, tt := range tests {
		if ok, _ := l.Allow(tt.addr); ok != tt.want {
			t.Errorf("Allow(%q): got %v; want %v", tt.addr, ok, tt.want)
		}
	}
}

// TestRateLimiterBoundedMemory floods the limiter with distinct clients:
// it remembers at most MaxClients, forgetting the least recently seen.
func TestRateLimiterBoundedMemory(t *testing.T) {
	clock := newFakeClock()
	l := newTestLimiter(t, RateLimiterOptions{Rate: 1, Burst: 1, MaxClients: 100, Now: clock.Now})
	l.Allow("198.51.100.1") // spent; it must stay remembered while active
	for i := range 10_000 {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
		l.Allow(addr)
		if i%50 == 0 {
			if ok, _ := l.Allow("198.51.100.1"); ok {
				t.Fatalf("after %d other clients: the active, throttled client got a token; want it remembered as spent", i)
			}
		}
	}
	if got := l.Clients(); got != 100 {
		t.Errorf("Clients after 10,000 distinct: got %d; want 100", got)
	}
}

// TestRateLimitInProxy sends requests through a proxy with a limiter: the
// client beyond its burst gets 429 with Retry-After and the upstream never
// sees those requests; behind a trusted proxy the limit is per real client.
func TestRateLimitInProxy(t *testing.T) {
	clock := newFakeClock()
	b := newBackend(t, "a", nil)
	limiter := newTestLimiter(t, RateLimiterOptions{Rate: 1, Burst: 2, Now: clock.Now})
	trusted, err := ParseTrustedProxies([]string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProxy(t, Options{RateLimit: limiter, TrustedProxies: trusted}, b.upstream())
	url, c := front(t, p)

	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests} {
		code, _, hdr := get(t, c, url+"/x", map[string]string{"X-Forwarded-For": "203.0.113.7"})
		if code != want {
			t.Errorf("request %d: got %d; want %d", i, code, want)
		}
		if code == http.StatusTooManyRequests && hdr.Get("Retry-After") != "1" {
			t.Errorf("429: got Retry-After %q; want 1", hdr.Get("Retry-After"))
		}
	}
	if got := b.hits.Load(); got != 2 {
		t.Errorf("upstream hits: got %d; want 2 (the limited request must not reach it)", got)
	}
	// Another client behind the same trusted proxy has its own bucket.
	if code, _, _ := get(t, c, url+"/x", map[string]string{"X-Forwarded-For": "203.0.113.8"}); code != http.StatusOK {
		t.Errorf("another client behind the trusted proxy: got %d; want 200", code)
	}
	clock.Advance(time.Second)
	if code, _, _ := get(t, c, url+"/x", map[string]string{"X-Forwarded-For": "203.0.113.7"}); code != http.StatusOK {
		t.Errorf("the limited client a second later: got %d; want 200", code)
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	l, err := NewRateLimiter(RateLimiterOptions{Rate: 1e9, Burst: 1e9})
	if err != nil {
		b.Fatal(err)
	}
	addrs := make([]string, 1024)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.%d.%d", i>>8, i&0xff)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(addrs[i&1023])
		i++
	}
}
