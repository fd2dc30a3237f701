package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// An upgraded connection (a WebSocket) is relayed by a tunnel of flowgate's
// own rather than by httputil.ReverseProxy's: ReverseProxy keeps the
// handler goroutine waiting until the connection ends, and with it the
// server connection's 4 KiB reader and writer, the response writer, the
// request and a stack grown by the TLS handshake, and it copies each
// direction with a 32 KiB buffer: about 90 KiB for every idle WebSocket.
// modifyResponse hands the 101 response to startTunnel instead, which
// checks and answers the upgrade as ReverseProxy does, starts the two
// directions and lets the handler return; the request is finished (access
// log, metrics, in-flight count) when the tunnel ends.
//
// Most WebSockets are idle most of the time, so a direction has two modes.
// Copying, a goroutine reads and writes with a small buffer, and borrows a
// pooled 32 KiB one while data arrives faster than the small one holds.
// Once its source has been quiet for a whole tunnelQuietPeriod, the
// direction goes idle: the copying goroutine, whose stack the TLS and
// write paths have grown, starts a new goroutine and ends. The new one
// waits on the socket itself (waitReadable), with no buffer and the
// smallest stack, and starts copying when there is something to read. An
// idle WebSocket thus costs two small stacks besides the connections
// themselves.

// errTunnelStarted is what modifyResponse returns once it has taken an
// upgraded connection over; errorHandler answers it with nothing.
var errTunnelStarted = errors.New("upgraded connection handed to a tunnel")

// startTunnel takes over a 101 Switching Protocols response: the checks and
// the answer of httputil.ReverseProxy's handleUpgradeResponse, then the
// tunnel. On error the caller (ReverseProxy) closes res.Body and calls the
// error handler, as it does for its own upgrades.
func (p *Proxy) startTunnel(st *requestState, res *http.Response) error {
	reqUpType := upgradeType(res.Request.Header)
	resUpType := upgradeType(res.Header)
	if !isPrint(resUpType) {
		return fmt.Errorf("backend tried to switch to invalid protocol %q", resUpType)
	}
	if !strings.EqualFold(reqUpType, resUpType) {
		return fmt.Errorf("backend tried to switch protocol %q when %q was requested", resUpType, reqUpType)
	}
	back, ok := res.Body.(*trackedConn)
	if !ok {
		return errors.New("internal error: 101 switching protocols response with non-writable body")
	}
	rw := &st.rec
	conn, brw, err := http.NewResponseController(rw).Hijack()
	if errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("can't switch protocols using non-Hijacker ResponseWriter type %T", rw.ResponseWriter)
	}
	if err != nil {
		return fmt.Errorf("hijack failed on protocol switch: %w", err)
	}
	copyHeader(rw.Header(), res.Header)
	res.Header = rw.Header()
	res.Body = nil // so that res.Write writes the head only
	err = res.Write(brw)
	if err == nil {
		err = brw.Flush()
	}
	res.Body = back
	if err != nil {
		conn.Close()
		return fmt.Errorf("response write: %w", err)
	}
	// Bytes the client sent after its upgrade request, already buffered by
	// the server, go to the upstream first.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		early = append([]byte(nil), b...)
	}
	// Nothing of the server's connection is needed any more.
	rw.ResponseWriter = nil
	st.tunnel.Store(2) // the handler and the tunnel
	res.Body = http.NoBody
	t := &tunnel{p: p, st: st, client: conn, back: back}
	t.running.Store(2)
	t.up = direction{t: t, src: conn, dst: back, early: early}
	t.up.setQuiet(conn)
	t.down = direction{t: t, src: back, dst: conn}
	if d := st.opts.SendTimeout; d > 0 {
		// A client that stops reading what the upstream pushes is cut,
		// as on any response (NGINX applies send_timeout to upgraded
		// connections too). Writes to the upstream are not bounded: a
		// drain's close frame must still reach an idle WebSocket's node.
		t.down.send = &sendDeadline{conn: conn, d: d}
	}
	if uc, ok := back.ReadWriteCloser.(*prefixConn); ok {
		t.down.early, uc.prefix = uc.prefix, nil
		t.down.setQuiet(uc)
	}
	t.up.start()
	t.down.start()
	return errTunnelStarted
}

// tunnel relays an upgraded connection in both directions. The first
// direction to end closes both connections; the last finishes the request.
type tunnel struct {
	p      *Proxy
	st     *requestState
	client net.Conn
	back   *trackedConn
	// running counts the directions still copying or waiting.
	running  atomic.Int32
	up, down direction
}

// direction is one way through a tunnel: from src to dst.
type direction struct {
	t   *tunnel
	src io.Reader
	dst io.Writer
	// early is what was read from src before the tunnel started; it is
	// written first.
	early []byte
	// conn is src's connection and raw its socket, for idling (see
	// setQuiet); nil when src cannot idle: it is then read continuously.
	conn readDeadliner
	raw  syscall.RawConn
	// send bounds each write to dst; nil for none.
	send *sendDeadline
}

type readDeadliner interface{ SetReadDeadline(time.Time) error }

// sendDeadline bounds each write to a connection by a timeout, renewing
// its write deadline lazily (keptDeadline): a write that waits longer
// than d, because the peer stopped reading, fails.
type sendDeadline struct {
	conn interface{ SetWriteDeadline(time.Time) error }
	d    time.Duration
	kept keptDeadline
}

// renew sets the write deadline for a write about to start, when the one
// in force would fall more than the slack early. s may be nil.
func (s *sendDeadline) renew() error {
	if s == nil {
		return nil
	}
	if t, set := s.kept.renew(s.d); set {
		return s.conn.SetWriteDeadline(t)
	}
	return nil
}

// setQuiet lets the direction idle when c, the connection under src, has a
// socket to wait on.
func (d *direction) setQuiet(c net.Conn) {
	if raw := socketOf(c); raw != nil {
		d.conn, d.raw = c, raw
	}
}

// start starts the direction on a goroutine of its own.
func (d *direction) start() {
	if d.raw == nil || len(d.early) > 0 {
		go d.copy()
	} else {
		go d.idle()
	}
}

// idle waits until src has something to read, then copies.
func (d *direction) idle() {
	if err := waitReadable(d.raw); err != nil {
		d.t.end() // closed
		return
	}
	d.copy()
}

// copy copies until src stays quiet (then idles on a new goroutine) or
// either side fails or ends (then ends the tunnel).
func (d *direction) copy() {
	if len(d.early) > 0 {
		err := d.send.renew()
		n := 0
		if err == nil {
			n, err = d.dst.Write(d.early)
		}
		if err == nil && n != len(d.early) {
			err = io.ErrShortWrite
		}
		d.early = nil
		if err != nil {
			d.t.end()
			return
		}
	}
	_, err := pump(d.dst, d.src, d.t.back.bufs, d.conn, tunnelQuietPeriod, d.send)
	if err == errQuiet {
		go d.idle()
		return
	}
	if d.send != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		st := d.t.st
		st.opts.Logger.Info("websocket closed: the client stopped reading", "client", st.clientIP, "upstream", st.upstream.key, "send_timeout", d.send.d)
		d.t.cut()
		return
	}
	d.t.end()
}

// end closes both sides, which ends the other direction too, as
// ReverseProxy does when either direction stops. The last direction to end
// finishes the request, unless the handler has not returned yet: then the
// handler does.
func (t *tunnel) end() {
	t.back.Close()
	t.client.Close()
	t.ended()
}

// cut ends the tunnel for a client that stopped reading: its socket is
// closed without TLS's close_notify, which such a client would not read
// either (tls.Conn.Close waits up to 5 s to send it).
func (t *tunnel) cut() {
	t.back.Close()
	closeSocket(t.client)
	t.ended()
}

// closeSocket closes the socket under c, unwrapping TLS (and the fast
// path's prefixConn) so that nothing more is written to it.
func closeSocket(c net.Conn) {
	for {
		switch v := c.(type) {
		case *prefixConn:
			c = v.Conn
		case *tls.Conn:
			v.NetConn().Close()
			return
		default:
			c.Close()
			return
		}
	}
}

// ended counts a direction out; see end.
func (t *tunnel) ended() {
	if t.running.Add(-1) != 0 {
		return
	}
	if t.st.tunnel.Add(-1) == 0 {
		t.p.finish(t.st)
	}
}

// socketOf is the socket under c (unwrapping TLS and any connection with a
// NetConn method), or nil when there is none to wait on. A wrapper with a
// NetConn method must not keep data it has read from the connection under
// it: a wait on the socket would not see that data.
func socketOf(c any) syscall.RawConn {
	for range 8 {
		switch v := c.(type) {
		case syscall.Conn:
			if !canWaitReadable {
				return nil
			}
			raw, err := v.SyscallConn()
			if err != nil {
				return nil
			}
			return raw
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// upgradeType is the protocol an upgrade request or response names.
func upgradeType(h http.Header) string {
	if !hasToken(h["Connection"], "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

func isPrint(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// copyHeader adds every value of src to dst.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
}

// tunnelSmallBuf is the buffer a copying direction reads with. A typical
// WebSocket message (a TLS record of a few hundred bytes to 1 KiB) fits.
const tunnelSmallBuf = 2 << 10

// tunnelQuietPeriod is how long a direction's source must stay quiet for
// the direction to go idle. While data flows, the period's timer is set
// once per period, not per read; a direction that goes quiet idles within
// two periods.
const tunnelQuietPeriod = 100 * time.Millisecond

var (
	errInvalidWrite = errors.New("invalid write result")
	// errQuiet ends a pump whose source stayed quiet for a whole period.
	errQuiet = errors.New("source quiet for a whole period")
)

// pump copies from src to dst with io.Copy's semantics (io.EOF ends the
// copy without error; any other error is returned). It reads into a small
// buffer; when a read fills it, it switches to a buffer from pool (of
// *copyBuf; nil means never) and returns it once a read brings less than
// the small buffer would have held.
//
// With send set, each write to dst is bounded by its timeout.
//
// With quiet set (src's connection), pump also returns, with errQuiet and
// the read deadline cleared, once src has sent nothing for a whole period. src must then keep no data of its own between reads
// that a wait on the socket would miss: a tls.Conn only times out while it
// lacks a whole record, and it keeps a partial one for the next read.
func pump(dst io.Writer, src io.Reader, pool *sync.Pool, quiet readDeadliner, period time.Duration, send *sendDeadline) (written int64, err error) {
	small := make([]byte, tunnelSmallBuf)
	buf := small
	var big *copyBuf
	defer func() {
		if big != nil {
			pool.Put(big)
		}
	}()
	moved := false
	if quiet != nil {
		if err := quiet.SetReadDeadline(time.Now().Add(period)); err != nil {
			return 0, err
		}
	}
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			moved = true
			if err := send.renew(); err != nil {
				return written, err
			}
			nw, werr := dst.Write(buf[:nr])
			if nw < 0 || nr < nw {
				nw = 0
				if werr == nil {
					werr = errInvalidWrite
				}
			}
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nr != nw {
				return written, io.ErrShortWrite
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			if quiet == nil || !errors.Is(rerr, os.ErrDeadlineExceeded) {
				return written, rerr
			}
			next := time.Time{} // quiet for a whole period: no deadline while idle
			if moved {
				next = time.Now().Add(period)
			}
			if err := quiet.SetReadDeadline(next); err != nil {
				return written, err
			}
			if !moved {
				return written, errQuiet
			}
			moved = false
			continue
		}
		switch {
		case big == nil && nr == len(small) && pool != nil:
			big = pool.Get().(*copyBuf)
			buf = big[:]
		case big != nil && nr < len(small):
			pool.Put(big)
			big = nil
			buf = small
		}
	}
}
