package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
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
	up     discovery.Upstream
	key    string // discovery.Upstream.Key()
	cookie string // opaque sticky-cookie value; never reveals the address
	// h1 carries requests without a body or with one read whole, and no
	// upgrade (h1transport.go); transport those whose body streams. Nil in
	// tests that build upstreams by hand.
	h1        *h1Transport
	transport *http.Transport
	// wsTransport carries WebSocket upgrades: no read timeout. Nil in
	// tests that build upstreams by hand.
	wsTransport *upgradeTransport
	metrics     *upstreamMetrics

	inflight atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64

	mu        sync.Mutex
	fails     int           // failures inside the current fail window
	failStart time.Time     // start of the current fail window
	downUntil time.Time     // passive health: not picked before this
	check     checkState    // active health (healthcheck.go)
	checkDown bool          // active health: not picked (applyChecks)
	checkWait time.Duration // with checkDown: the check interval, for Retry-After
	removed   bool          // no longer in the set; draining
	// warmStart, in Unix nanoseconds, is the start of the upstream's slow
	// start: the latest of when it joined a running set, passed its health
	// checks again or will come back from passive ejection; 0 for never.
	// Atomic, so that a pick reads it without the lock.
	warmStart atomic.Int64
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

// retire closes the idle connections of an upstream that has left for good,
// and those of requests still in flight as they end.
func (u *upstream) retire() {
	if u.h1 != nil {
		u.h1.retire()
	}
	u.closeIdle()
}

// closeIdle closes the upstream's pooled idle connections.
func (u *upstream) closeIdle() {
	if u.h1 != nil {
		u.h1.CloseIdleConnections()
	}
	if u.transport != nil {
		u.transport.CloseIdleConnections()
	}
	if u.wsTransport != nil {
		u.wsTransport.CloseIdleConnections()
	}
}

// readTimeoutConn is an upstream connection whose every read must see data
// within timeout.
type readTimeoutConn struct {
	net.Conn
	timeout time.Duration
}

func (c *readTimeoutConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// available reports whether passive and active health let the upstream
// take requests.
func (u *upstream) available(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !now.Before(u.downUntil) && !u.checkDown
}

// minWarmShare is the share of its requests that an upstream in slow
// start takes at first: enough to start warming it up.
const minWarmShare = 0.1

// share is the part of its requests that the upstream takes at now during
// a slow start of length slowStart: from minWarmShare, when it joined a
// running set, came back from passive ejection or passed its health
// checks again, rising evenly to 1. 1 without slow start, or once it is
// over.
func (u *upstream) share(now time.Time, slowStart time.Duration) float64 {
	if slowStart <= 0 {
		return 1
	}
	start := u.warmStart.Load()
	if start == 0 {
		return 1
	}
	f := float64(now.UnixNano()-start) / float64(slowStart)
	switch {
	case f >= 1:
		return 1
	case f < minWarmShare:
		return minWarmShare
	}
	return f
}

// warmFrom starts a slow start at t, unless a later one is due already
// (the end of a passive ejection).
func (u *upstream) warmFrom(t time.Time) {
	n := t.UnixNano()
	for {
		cur := u.warmStart.Load()
		if cur >= n || u.warmStart.CompareAndSwap(cur, n) {
			return
		}
	}
}

// retryAfter is how long until a down upstream is tried again: the end of
// its passive ejection, or the next health check.
func (u *upstream) retryAfter(now time.Time) time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	d := u.downUntil.Sub(now)
	if u.checkDown {
		d = max(d, u.checkWait)
	}
	return d
}

// state is the upstream's state for /status: up, ejected (passive health)
// or unhealthy (active health).
func (u *upstream) state(now time.Time) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case now.Before(u.downUntil):
		return "ejected"
	case u.checkDown:
		return "unhealthy"
	}
	return "up"
}

// fail records a failed attempt. With maxFails > 0, maxFails failures within
// failTimeout take the upstream out for failTimeout, as NGINX does; unlike
// NGINX, a good response in between clears the count (succeed), as the
// consecutive-error checks of HAProxy and Envoy do. It reports whether this
// failure took the upstream down.
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
		u.warmFrom(u.downUntil) // back from the ejection: a slow start, if any
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

// socketCount is the number of upgraded connections to the upstream.
func (u *upstream) socketCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.sockets)
}

// sockets lists the upgraded connections to the upstream.
func (u *upstream) socketList() []*trackedConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	conns := make([]*trackedConn, 0, len(u.sockets))
	for c := range u.sockets {
		conns = append(conns, c)
	}
	return conns
}

// closeSockets closes every upgraded connection to the upstream.
func (u *upstream) closeSockets() int {
	conns := u.socketList()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// trackedConn is the upstream side of an upgraded connection. The reverse
// proxy closes it when either side ends; closing it from outside ends the
// tunnel. Writes to it are the client's frames; it tracks their boundaries
// so that goAway can slip a close frame in between two of them.
type trackedConn struct {
	io.ReadWriteCloser
	once    sync.Once
	onClose func()
	bufs    *sync.Pool // of *copyBuf, for busy tunnels (tunnel.go); nil: none

	mu     sync.Mutex // serialises client writes and goAway
	frames frameTracker
	away   bool
}

// errUpstreamClosed ends a tunnel when the upstream closes its side.
var errUpstreamClosed = errors.New("upstream closed the websocket connection")

// Read turns the upstream's end of stream into an error: httputil.ReverseProxy
// then closes the client connection at once (after relaying everything the
// upstream sent, its close frame included) instead of half-closing it and
// waiting for the client.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	if err == io.EOF {
		err = errUpstreamClosed
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.away {
		// The upstream was told the client is going away; it must see
		// nothing after the close frame.
		return len(p), nil
	}
	n, err := c.ReadWriteCloser.Write(p)
	c.frames.feed(p[:n])
	return n, err
}

// goAway tells the upstream, on the client's behalf, that the connection is
// closing (status 1001), if the client is between two frames. The upstream
// then answers with its own close frame, which reaches the client: a clean
// WebSocket close on both sides. It reports whether the frame was sent.
func (c *trackedConn) goAway() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.away || !c.frames.atBoundary() {
		return false
	}
	c.away = true
	_, err := c.ReadWriteCloser.Write(goingAwayFrame())
	return err == nil
}

func (c *trackedConn) Close() error {
	err := c.ReadWriteCloser.Close()
	c.once.Do(c.onClose)
	return err
}
