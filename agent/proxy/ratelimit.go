package proxy

import (
	"container/list"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// RateLimiterOptions configure NewRateLimiter.
type RateLimiterOptions struct {
	// Rate is the sustained number of requests per second each client may
	// send. Required: above zero.
	Rate float64
	// Burst is how many requests a client may send at once after being
	// quiet; it is the size of each client's token bucket. Zero means
	// max(1, 2×Rate).
	Burst int
	// MaxClients bounds the clients remembered at once; the least recently
	// seen is forgotten first (it starts again with a full bucket). Zero
	// means 100,000 (about 10 MB).
	MaxClients int
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// DefaultRateLimitClients is the default of RateLimiterOptions.MaxClients.
const DefaultRateLimitClients = 100_000

func (o RateLimiterOptions) withDefaults() RateLimiterOptions {
	if o.Burst <= 0 {
		o.Burst = max(1, int(2*o.Rate))
	}
	if o.MaxClients <= 0 {
		o.MaxClients = DefaultRateLimitClients
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// RateLimiter limits requests per client with a token bucket each: a client
// may send Burst requests at once and Rate per second on average. Clients
// are keyed by IPv4 address or IPv6 /64 network (one host holds a whole
// /64, and would otherwise pass the limit and flush the others out of
// memory by changing address). Memory is bounded by MaxClients. It is safe
// for concurrent use; share one across configuration reloads to keep the
// clients' state.
type RateLimiter struct {
	opts RateLimiterOptions

	mu      sync.Mutex
	clients map[netip.Prefix]*list.Element // of *bucket
	lru     list.List                      // front: most recently seen
}

// bucket is one client's token bucket.
type bucket struct {
	key    netip.Prefix
	tokens float64
	last   time.Time
}

// NewRateLimiter creates a limiter. It fails when Rate is not above zero.
func NewRateLimiter(opts RateLimiterOptions) (*RateLimiter, error) {
	if !(opts.Rate > 0) {
		return nil, fmt.Errorf("rate limit: %v requests per second must be above zero", opts.Rate)
	}
	if opts.Burst < 0 || opts.MaxClients < 0 {
		return nil, fmt.Errorf("rate limit: burst %d and max clients %d must not be negative", opts.Burst, opts.MaxClients)
	}
	return &RateLimiter{opts: opts.withDefaults(), clients: make(map[netip.Prefix]*list.Element)}, nil
}

// Allow takes a token for the client at addr. When none is left it returns
// false and how long until the next one. An address that does not parse is
// limited as one shared client.
func (l *RateLimiter) Allow(addr string) (ok bool, retryAfter time.Duration) {
	key := clientKey(addr)
	now := l.opts.Now()
	burst := float64(l.opts.Burst)

	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if e, found := l.clients[key]; found {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
		if elapsed := now.Sub(b.last); elapsed > 0 {
			b.tokens = min(burst, b.tokens+elapsed.Seconds()*l.opts.Rate)
		}
		b.last = now
	} else {
		if l.lru.Len() >= l.opts.MaxClients {
			oldest := l.lru.Back()
			delete(l.clients, oldest.Value.(*bucket).key)
			l.lru.Remove(oldest)
		}
		b = &bucket{key: key, tokens: burst, last: now}
		l.clients[key] = l.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.opts.Rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// Clients is the number of clients currently remembered.
func (l *RateLimiter) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// clientKey maps an address to its limiting key: the IPv4 address, or the
// /64 network of an IPv6 address.
func clientKey(addr string) netip.Prefix {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}
