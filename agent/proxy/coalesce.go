package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// coalescingConn is a client connection under TLS whose writes, once an
// HTTP/2 session starts (coalesce), are gathered and sent by a goroutine
// of their own, so that what many streams flushed while that goroutine
// waited to run leaves in one system call.
//
// net/http's HTTP/2 server flushes whenever its write queue runs empty,
// which under load is after nearly every frame: a response's HEADERS and
// its DATA each cost a write, two system calls per response where NGINX
// makes a fraction of one. Before coalesce, and for HTTP/1.1 throughout,
// a write goes straight to the socket.
//
// A Write returns once its bytes are queued; a failure to send them is
// returned by the next Write. Writes block while more than
// coalesceLimit bytes wait, so a client that does not read holds back its
// session as the socket alone would. Deadlines are the socket's: they
// bound the sending goroutine's writes. Close closes the socket once what
// is queued is sent, within closeFlushTimeout.
type coalescingConn struct {
	net.Conn
	on atomic.Bool

	mu      sync.Mutex
	sent    sync.Cond // under mu: the queue was taken, or the connection failed or closed
	queue   *[]byte   // bytes written and not yet handed to the socket; nil when none
	sending bool      // a sender goroutine is running
	closing bool      // Close was called: the sender closes the socket when done
	err     error     // the first write failure, or net.ErrClosed after Close
}

const (
	// coalesceLimit bounds the bytes queued for a client: a few dozen
	// small responses, or four full HTTP/2 DATA frames.
	coalesceLimit = 64 << 10
	// closeFlushTimeout bounds the time Close leaves the socket open to
	// send what is queued, as crypto/tls bounds its close_notify.
	closeFlushTimeout = 5 * time.Second
)

// batches are queue buffers, shared so that an idle connection holds none.
var batches = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c}
	cc.sent.L = &cc.mu
	return cc
}

// coalesce starts gathering writes. Nothing may write concurrently.
func (c *coalescingConn) coalesce() { c.on.Store(true) }

// NetConn is the socket, for the idle wait of a WebSocket tunnel.
func (c *coalescingConn) NetConn() net.Conn { return c.Conn }

func (c *coalescingConn) Write(p []byte) (int, error) {
	if !c.on.Load() {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && c.queued() >= coalesceLimit {
		c.sent.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.queue == nil {
		c.queue = batches.Get().(*[]byte)
	}
	*c.queue = append(*c.queue, p...)
	if !c.sending {
		c.sending = true
		go c.send()
	}
	return len(p), nil
}

// queued is the number of bytes waiting; under mu.
func (c *coalescingConn) queued() int {
	if c.queue == nil {
		return 0
	}
	return len(*c.queue)
}

// send writes the queue to the socket until it is empty, then ends; after
// Close, it closes the socket.
func (c *coalescingConn) send() {
	c.mu.Lock()
	for c.queue != nil {
		batch := c.queue
		c.queue = nil
		c.sent.Broadcast()
		c.mu.Unlock()
		_, err := c.Conn.Write(*batch)
		if cap(*batch) <= 2*coalesceLimit {
			*batch = (*batch)[:0]
			batches.Put(batch)
		}
		c.mu.Lock()
		if err != nil {
			c.fail(err)
			if c.queue != nil {
				*c.queue = (*c.queue)[:0]
				batches.Put(c.queue)
				c.queue = nil
			}
			c.sent.Broadcast()
		}
	}
	c.sending = false
	if c.closing {
		c.Conn.Close()
	}
	c.mu.Unlock()
}

// fail records the connection's first failure; under mu.
func (c *coalescingConn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Close closes the socket at once when nothing is queued, or else has the
// sender close it once the queue is sent, waiting at most
// closeFlushTimeout for a client that does not read.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closing = true
	c.fail(net.ErrClosed)
	c.sent.Broadcast()
	if !c.sending {
		c.mu.Unlock()
		return c.Conn.Close()
	}
	c.mu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	return nil
}
