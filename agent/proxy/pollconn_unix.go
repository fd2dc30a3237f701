//go:build unix

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// pollConn is a TCP connection to an upstream that can send a request
// within the read of its response (hold), as an event loop writes a
// request and then waits for the answer.
//
// net reads a socket by calling read(2) first and waiting for the
// runtime's poller only when told EAGAIN: the poller's readiness is
// cleared as a read starts, so a wait alone could miss bytes that came in
// before. Right after a request is written its response cannot be there
// yet, so that first call is wasted: one of the seven system calls a
// keep-alive request took. A held request goes out inside the read
// instead, after the readiness is cleared; the read then waits, and the
// edge-triggered poller reports whatever arrives after the write. NGINX
// saves the same call (it waits for the upstream's read event).
//
// The liveness check of a pooled connection (h1Conn.alive) moves into
// the read too, just before the write, so that nothing the upstream sent
// while the connection was idle can slip in unnoticed between the check
// and the write.
//
// A pollConn is used by one goroutine at a time, as an h1Conn is.
type pollConn struct {
	net.Conn
	raw syscall.RawConn

	held    *[]byte // bytes written since hold, for the next Read to send; nil when none
	holding bool    // Writes go to held
	check   bool    // the next Read checks the connection before it sends
	failed  error   // a heldWriteError, returned by every Read from then on

	// One read's state, here so that raw.Read's callback, made once,
	// allocates nothing.
	send     []byte // what is left to send
	p        []byte
	n        int
	errno    error // of read(2)
	werr     error // of the check or write(2), sending held
	callback func(fd uintptr) bool
	syscalls int // read(2) calls made, for tests
}

// heldBufs are the buffers of held requests, shared: a connection keeps
// one only from a hold to the next read.
var heldBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// errIdleConnUnusable is the check's finding: the upstream closed the
// idle connection or sent something unasked on it.
var errIdleConnUnusable = errors.New("upstream closed the idle connection or sent on it unasked")

// newPollConn wraps c, a dialled connection, when it is a TCP connection;
// otherwise it returns c.
func newPollConn(c net.Conn) net.Conn {
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return c
	}
	pc := &pollConn{Conn: c, raw: raw}
	pc.callback = pc.step
	return pc
}

// hold makes Writes, until the next Read, gather their bytes for that
// Read to send before it waits. With check, that Read first makes sure
// nothing came in on the connection (h1Conn.alive), and fails with a
// heldWriteError, sending nothing, if something did. The caller reads
// next, or closes the connection, which drops what is held. Once sending
// fails, every Read returns that failure: the connection is done.
func (c *pollConn) hold(check bool) { c.holding, c.check = true, check }

func (c *pollConn) Write(p []byte) (int, error) {
	if !c.holding {
		return c.Conn.Write(p)
	}
	if c.held == nil {
		c.held = heldBufs.Get().(*[]byte)
	}
	*c.held = append(*c.held, p...)
	return len(p), nil
}

func (c *pollConn) Read(p []byte) (int, error) {
	if !c.holding {
		if c.failed != nil {
			return 0, c.failed
		}
		return c.Conn.Read(p)
	}
	c.holding = false
	if c.held == nil || len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.send, c.p, c.n, c.errno, c.werr = *c.held, p, 0, nil, nil
	err := c.raw.Read(c.callback)
	rest, werr := c.send, c.werr
	c.send, c.p = nil, nil
	sent := len(rest) < len(*c.held)
	c.release()
	switch {
	case werr == errIdleConnUnusable:
		c.failed = &heldWriteError{err: werr}
		return 0, c.failed
	case werr != nil:
		c.failed = &heldWriteError{err: c.opError("write", os.NewSyscallError("write", werr)), sent: sent}
		return 0, c.failed
	case err != nil && !sent:
		// The read could not start (a deadline passed, or the connection
		// closed): the request stays unsent.
		return 0, c.opError("read", rawErr(err))
	case len(rest) > 0:
		// The socket took only part: send the rest as any write, then
		// read as any read.
		if n, err := c.Conn.Write(rest); err != nil {
			c.failed = &heldWriteError{err: err, sent: sent || n > 0}
			return 0, c.failed
		}
		return c.Conn.Read(p)
	case err == nil && c.errno != nil:
		err = os.NewSyscallError("read", c.errno)
	}
	if err != nil {
		return 0, c.opError("read", rawErr(err))
	}
	if c.n == 0 {
		return 0, io.EOF
	}
	return c.n, nil
}

// step is raw.Read's callback: false to wait for the socket to be
// readable, true when done. Its first call checks the connection and
// sends what is held, then waits; when the socket takes only part, or the
// check or the write fails, it is done.
func (c *pollConn) step(fd uintptr) bool {
	if c.check {
		c.check = false
		if !socketQuiet(fd) {
			c.werr = errIdleConnUnusable
			return true
		}
	}
	if len(c.send) > 0 {
		for len(c.send) > 0 {
			n, err := syscall.Write(int(fd), c.send)
			switch err {
			case nil:
				if n <= 0 {
					c.werr = io.ErrUnexpectedEOF // as net's write, which would loop otherwise
					return true
				}
				c.send = c.send[n:]
			case syscall.EINTR:
			case syscall.EAGAIN:
				return true
			default:
				c.werr = err
				return true
			}
		}
		return false // wait for the answer
	}
	for {
		c.syscalls++
		n, err := syscall.Read(int(fd), c.p)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.n, c.errno = max(n, 0), err
		return true
	}
}

func (c *pollConn) release() {
	*c.held = (*c.held)[:0]
	if cap(*c.held) <= 64<<10 {
		heldBufs.Put(c.held)
	}
	c.held = nil
}

// rawErr is the error under raw.Read's, which it names "raw-read".
func rawErr(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

func (c *pollConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// SyscallConn is the socket's, for a tunnel's idle wait.
func (c *pollConn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// NetConn is the connection wrapped.
func (c *pollConn) NetConn() net.Conn { return c.Conn }
