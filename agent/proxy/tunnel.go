package proxy

import (
	"errors"
	"io"
	"sync"
)

// httputil.ReverseProxy relays an upgraded connection (a WebSocket) with two
// io.Copy calls. Plain io.Copy allocates a 32 KiB buffer for each direction,
// and both live as long as the connection: 64 KiB for every idle WebSocket.
// trackedConn implements io.WriterTo and io.ReaderFrom, so that those
// io.Copy calls run pump instead: it waits for data with a small buffer of
// its own and borrows a pooled 32 KiB buffer only while data arrives faster
// than the small one holds.

// tunnelSmallBuf is the buffer an upgraded connection waits with. A typical
// WebSocket message (a TLS record of a few hundred bytes to 1 KiB) fits.
const tunnelSmallBuf = 2 << 10

var errInvalidWrite = errors.New("invalid write result")

var (
	_ io.WriterTo   = (*trackedConn)(nil)
	_ io.ReaderFrom = (*trackedConn)(nil)
)

// WriteTo copies what the upstream sends to w (the client) until the
// upstream closes or fails. ReverseProxy's io.Copy calls it.
func (c *trackedConn) WriteTo(w io.Writer) (int64, error) {
	return pump(w, c.Read, c.bufs)
}

// ReadFrom copies what r (the client) sends to the upstream until r ends or
// fails. ReverseProxy's io.Copy calls it. Writes go through Write, which
// keeps track of the WebSocket frame boundaries.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	return pump(c, r.Read, c.bufs)
}

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
