package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

// upstream is one backend node and everything flowgate keeps about it. It
// outlives any one upstream set: a node that stays across an update keeps its
// pooled connections, counters and passive-health state.
type upstream struct {
	up        discovery.Upstream
	key       string // discovery.Upstream.Key()
	cookie    string // opaque sticky-cookie value; never reveals the address
	transport *http.Transport
	metrics   *upstreamMetrics

	inflight atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64

	mu        sync.Mutex
	fails     int       // failures inside the current fail window
	failStart time.Time // start of the current fail window
	downUntil time.Time // passive health: not picked before this
	removed   bool      // no longer in the set; draining
	sockets   map[*trackedConn]struct{}
}

func newUpstream(u discovery.Upstream, t *http.Transport, m *upstreamMetrics) *upstream {
	sum := sha256.Sum256([]byte(u.Key()))
	return &upstream{
		up:        u,
		key:       u.Key(),
		cookie:    hex.EncodeToString(sum[:8]),
		transport: t,
		metrics:   m,
		sockets:   make(map[*trackedConn]struct{}),
	}
}

// available reports whether passive health lets the upstream take requests.
func (u *upstream) available(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !now.Before(u.downUntil)
}

// retryAfter is how long until a down upstream is tried again.
func (u *upstream) retryAfter(now time.Time) time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.downUntil.Sub(now)
}

// fail records a failed attempt. With maxFails > 0, maxFails failures within
// failTimeout take the upstream out for failTimeout, as NGINX does. It
// reports whether this failure took the upstream down.
func (u *upstream) fail(now time.Time, maxFails int, failTimeout time.Duration) bool {
	u.failures.Add(1)
	if maxFails <= 0 {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if now.Sub(u.failStart) > failTimeout {
		u.failStart, u.fails = now, 0
	}
	u.fails++
	if u.fails >= maxFails && !now.Before(u.downUntil) {
		u.downUntil = now.Add(failTimeout)
		u.fails = 0
		return true
	}
	return false
}

// succeed clears the failure count after a good response.
func (u *upstream) succeed() {
	u.mu.Lock()
	u.fails = 0
	u.mu.Unlock()
}

// trackConn registers an upgraded (WebSocket) connection so that draining and
// shutdown can close it.
func (u *upstream) trackConn(c *trackedConn) {
	u.mu.Lock()
	u.sockets[c] = struct{}{}
	u.mu.Unlock()
}

func (u *upstream) untrackConn(c *trackedConn) {
	u.mu.Lock()
	delete(u.sockets, c)
	u.mu.Unlock()
}

// closeSockets closes every upgraded connection to the upstream.
func (u *upstream) closeSockets() int {
	u.mu.Lock()
	conns := make([]*trackedConn, 0, len(u.sockets))
	for c := range u.sockets {
		conns = append(conns, c)
	}
	u.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// trackedConn is the upstream side of an upgraded connection. The reverse
// proxy closes it when either side ends; closing it from outside ends the
// tunnel.
type trackedConn struct {
	io.ReadWriteCloser
	once    sync.Once
	onClose func()
}

func (c *trackedConn) Close() error {
	err := c.ReadWriteCloser.Close()
	c.once.Do(c.onClose)
	return err
}
