package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// An upgraded connection (a WebSocket) is relayed by a tunnel of flowgate's
// own rather than by httputil.ReverseProxy's: ReverseProxy keeps the
// handler goroutine waiting until the connection ends, and with it the
// server connection's 4 KiB reader and writer, the response writer, the
// request and a stack grown by the TLS handshake, and it copies each
// direction with a 32 KiB buffer: about 90 KiB for every idle WebSocket.
// modifyResponse hands the 101 response to startTunnel instead, which
// checks and answers the upgrade as ReverseProxy does, starts two copy
// goroutines and lets the handler return; the request is finished (access
// log, metrics, in-flight count) when the tunnel ends. Each direction waits
// with a small buffer and borrows a pooled 32 KiB one only while data
// arrives faster than the small one holds.

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
	go t.toUpstream(early)
	go t.toClient()
	return errTunnelStarted
}

// tunnel relays an upgraded connection in both directions. The first
// direction to end closes both connections; the last finishes the request.
type tunnel struct {
	p      *Proxy
	st     *requestState
	client net.Conn
	back   *trackedConn
	// running counts the directions still copying.
	running atomic.Int32
}

func (t *tunnel) toUpstream(early []byte) {
	defer t.end()
	if len(early) > 0 {
		if _, err := t.back.Write(early); err != nil {
			return
		}
	}
	pump(t.back, t.client.Read, t.back.bufs)
}

func (t *tunnel) toClient() {
	defer t.end()
	pump(t.client, t.back.Read, t.back.bufs)
}

// end closes both sides, which ends the other direction too, as
// ReverseProxy does when either direction stops. The last direction to end
// finishes the request, unless the handler has not returned yet: then the
// handler does.
func (t *tunnel) end() {
	t.client.Close()
	t.back.Close()
	if t.running.Add(-1) != 0 {
		return
	}
	if t.st.tunnel.Add(-1) == 0 {
		t.p.finish(t.st)
	}
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

// tunnelSmallBuf is the buffer an upgraded connection waits with. A typical
// WebSocket message (a TLS record of a few hundred bytes to 1 KiB) fits.
const tunnelSmallBuf = 2 << 10

var errInvalidWrite = errors.New("invalid write result")

// pump copies from read to dst with io.Copy's semantics (io.EOF ends the copy
// without error; any other error is returned). It reads into a small buffer;
// when a read fills it, it switches to a buffer from pool (of *copyBuf; nil
// means never) and returns it once a read brings less
// than the small buffer would have held, so an idle connection holds only
// the small buffer.
func pump(dst io.Writer, read func([]byte) (int, error), pool *sync.Pool) (written int64, err error) {
	small := make([]byte, tunnelSmallBuf)
	buf := small
	var big *copyBuf
	defer func() {
		if big != nil {
			pool.Put(big)
		}
	}()
	for {
		nr, rerr := read(buf)
		if nr > 0 {
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
			return written, rerr
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
