package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP/1.1 fast path. Profiles of the keep-alive benchmark put most of
// flowgate's CPU per request in net/http's server (a context, a header map
// and a background-read goroutine per request, a layered response writer)
// and in httputil.ReverseProxy (a copy of every request, header maps copied
// back and forth), not in TLS or the proxying itself. A ConnServer serves
// the common request, one without a body or with a small one
// (parseFastRequest), straight off the TLS connection: it reads the head
// and any body, sends them upstream
// through the same balancer, retries and passive health as every other
// request, and writes the response head and body to the client itself.
// The first request it declines hands the connection, with what it has
// read of it, to net/http's server for good (ConnServer.Listen).

// ConnOptions configure a ConnServer.
type ConnOptions struct {
	// Front is asked first, with the request's host and target. It returns
	// the Strict-Transport-Security values every response carries (nil for
	// none), and false for a request net/http's handler must answer (a host
	// that is not served here): the connection is then handed off.
	Front func(host, target string) (hsts []string, ok bool)
	// ReadHeaderTimeout bounds the wait for a request head once its first
	// byte arrived (for the first request: from the connection's start);
	// IdleTimeout the wait for the next request. 0 means no limit.
	ReadHeaderTimeout, IdleTimeout time.Duration
}

// ConnServer serves HTTP/1.1 connections on the fast path.
type ConnServer struct {
	p *Proxy
	o ConnOptions
	// handoff gives a connection to net/http's server (Listen), which owns
	// it from then.
	handoff func(net.Conn)

	closing atomic.Bool
	mu      sync.Mutex // guards conns
	conns   map[*fastConn]struct{}
}

// NewConnServer returns a ConnServer that proxies through p.
func (p *Proxy) NewConnServer(o ConnOptions) *ConnServer {
	return &ConnServer{p: p, o: o, conns: make(map[*fastConn]struct{})}
}

// fastReadSize is the read buffer of a fast-path connection: the largest
// request head the fast path takes. Larger ones go to net/http, whose
// limit is http.max_header_bytes.
const fastReadSize = 4 << 10

// clientWatchAfter is how long a request waits for its upstream before
// the connection is watched for the client going away (which cancels the
// upstream request, as net/http's server does with a goroutine reading
// every connection during every request).
const clientWatchAfter = 100 * time.Millisecond

// fastConn is one client connection.
type fastConn struct {
	s      *ConnServer
	tc     *tls.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string
	peer   tcpPeer // remote, parsed once

	// ctx is every request's context; cancel ends it when the client goes
	// away during a request, and the connection with it.
	ctx    context.Context
	cancel context.CancelFunc
	// One request at a time uses these: rb holds the request, st its
	// state, resp the upstream's response, answer a response flowgate
	// makes itself.
	rb     *requestBuf
	st     requestState
	resp   responseBuf
	answer errorWriter
	// body is the request's body, read whole into bodyBuf (readBody),
	// which is held only while a request with a body is served.
	body    bufferedBody
	bodyBuf *[]byte

	// mu orders the connection's idle state and read deadline against
	// Shutdown, and the client watch's start against its stop.
	mu   sync.Mutex
	idle bool // waiting for the next request
	// rdl is the client's read deadline, renewed lazily (keptDeadline).
	rdl keptDeadline
	// wdl is its write deadline (Options.SendTimeout), renewed lazily
	// before each write of a response, and cleared when net/http takes the
	// connection over.
	wdl keptDeadline

	// The client watch (startWatch): watch starts it; watching says it is
	// armed and not yet stopped; watchStopped (under mu) that stopWatch
	// ended it before it read; watched receives when a started watch ends.
	watch        *time.Timer
	watching     bool
	watchStopped bool
	watched      chan struct{}
}

// serveConn serves tc, whose TLS handshake is complete, until the client
// or an error closes it, or hands it off. It returns when either happened.
func (s *ConnServer) serveConn(tc *tls.Conn) {
	c := &fastConn{s: s, tc: tc, remote: tc.RemoteAddr().String(), watched: make(chan struct{}, 1)}
	c.peer = parsePeer(c.remote)
	if !s.track(c) {
		tc.Close()
		return
	}
	defer s.untrack(c)
	ctx, cancel := context.WithCancel(context.Background())
	c.ctx = httptrace.WithClientTrace(withAbortWatch(ctx), &httptrace.ClientTrace{Got1xxResponse: c.got1xx})
	c.cancel = cancel
	c.rb = newRequestBuf(c.ctx)
	defer cancel()
	c.br = bufio.NewReaderSize(tc, fastReadSize)
	c.bw = bufio.NewWriterSize(tc, 4<<10)
	if !c.serve() {
		tc.Close()
	}
}

// serve runs the request loop. It reports whether the connection was
// handed off; otherwise the caller closes it.
//
// Read deadlines: the wait for a request has the idle timeout (for the
// first request, the header timeout from the connection's start); a head
// that does not arrive whole with its first bytes then gets the header
// timeout. While a request is upstream the deadline is left as it was,
// since nothing reads; a client watch clears it before it reads.
func (c *fastConn) serve() (handedOff bool) {
	o := &c.s.o
	for n := 0; ; n++ {
		headDeadline := time.Time{} // set: the head has its own deadline
		if c.br.Buffered() == 0 {
			timeout := o.ReadHeaderTimeout
			if n > 0 {
				timeout = o.IdleTimeout
			}
			wait, ok := c.setIdle(true, timeout)
			if !ok {
				return false
			}
			_, err := c.br.Peek(1)
			c.setIdle(false, 0)
			if err != nil {
				return false
			}
			if n == 0 {
				headDeadline = wait
			}
		}
		head, err := c.readHead(headDeadline)
		if err == errNotFast {
			return c.handoff()
		}
		if err != nil {
			return false
		}
		r, fr, ok := c.rb.parse(head, c.remote)
		if !ok {
			return c.handoff()
		}
		hsts, ok := o.Front(r.Host, r.RequestURI)
		if !ok {
			return c.handoff()
		}
		c.br.Discard(len(head))
		more := c.serveRequest(r, fr, hsts)
		// An idle connection keeps nothing of its last request alive.
		c.rb.release()
		c.releaseBody()
		c.resp.release()
		c.st = requestState{}
		c.answer = errorWriter{}
		if !more || fr.close || c.ctx.Err() != nil || c.s.closing.Load() {
			return false
		}
	}
}

func after(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

var errNotFast = errors.New("request head not for the fast path")

// readHead returns the next request head, up to and including its empty
// line, without consuming it; errNotFast for a head too large for the
// read buffer or with a line ended by LF alone. Reading more than is
// buffered sets the header timeout first, unless deadline is already set
// for the head.
func (c *fastConn) readHead(deadline time.Time) ([]byte, error) {
	for {
		b, _ := c.br.Peek(c.br.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4], nil
		}
		if len(b) == c.br.Size() || hasBareLF(b) {
			// Too large, or a line ended by LF alone: net/http reads it.
			return nil, errNotFast
		}
		if deadline.IsZero() {
			deadline = after(c.s.o.ReadHeaderTimeout)
			c.mu.Lock()
			c.tc.SetReadDeadline(deadline)
			c.rdl.set(deadline)
			c.mu.Unlock()
		}
		if _, err := c.br.Peek(len(b) + 1); err != nil {
			return nil, err
		}
	}
}

// handoff gives the connection, and what was read of it, to net/http.
func (c *fastConn) handoff() bool {
	c.tc.SetReadDeadline(time.Time{})
	if c.wdl.known && !c.wdl.t.IsZero() {
		c.tc.SetWriteDeadline(time.Time{})
	}
	buffered, _ := c.br.Peek(c.br.Buffered())
	rc := &prefixConn{Conn: c.tc, prefix: bytes.Clone(buffered)}
	c.s.untrack(c)
	c.s.handoff(rc)
	return true
}

// prefixConn is a connection whose reads return first what was read from
// it before: the rest of a request the fast path had read when it handed
// the connection to net/http, or what an upstream sent right after its
// 101, in the same read as its head.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn is the connection underneath, for the idle wait of a WebSocket
// tunnel (socketOf), once no earlier bytes are left here; nil before, as
// a wait on the socket would miss them. net/http's server reads up to 4
// KiB at once, the most the fast path reads, so a handed-off connection's
// prefix is gone before any request is handled; a tunnel takes an
// upstream's early bytes before it waits.
func (c *prefixConn) NetConn() net.Conn {
	if len(c.prefix) > 0 {
		return nil
	}
	return c.Conn
}

// serveRequest proxies one request. It reports whether the connection can
// carry another.
func (c *fastConn) serveRequest(r *http.Request, fr fastRequest, hsts []string) bool {
	p := c.s.p
	ew := &c.answer
	st := &c.st
	p.initState(st, c.ctx, ew, r)
	st.respBuf = &c.resp
	defer p.handlerDone(st)
	n := fr.contentLength
	if n > 0 {
		r.Body = &c.body // read below; admit needs to know there is one
	}
	if !p.admit(st, r, c.peer, fr.xff) {
		// A body goes with its refusal (a body over max_body_bytes, a
		// blocked path): read and dropped, at most fastMaxBody, so that the
		// connection carries the next request. Closing it with the body
		// unread could reset it before the client read the answer.
		if n > 0 && c.readBody(n, st.opts.ClientBodyTimeout) != nil {
			c.writeAnswer(st, ew, hsts, true)
			return false
		}
		return c.writeAnswer(st, ew, hsts, fr.close)
	}
	if n > 0 {
		if err := c.readBody(n, st.opts.ClientBodyTimeout); err != nil {
			if !errors.As(err, new(*bodyTimeoutError)) {
				return false // the client went away or broke the stream
			}
			p.errorHandlerWith(&st.rec, r, st, &clientBodyError{err: err}, st.opts)
			delete(ew.h, "Connection") // writeAnswer writes it
			c.writeAnswer(st, ew, hsts, true)
			return false
		}
	}
	st.setForwarded(r.Header, r.Host, st.opts)
	c.startWatch()
	resp, err := roundTripper{p}.roundTrip(st, r)
	c.stopWatch()
	c.releaseBody() // nothing sends it again
	if err != nil {
		if c.ctx.Err() != nil {
			return false // the client went away
		}
		p.errorHandlerWith(&st.rec, r, st, err, st.opts)
		return c.writeAnswer(st, ew, hsts, fr.close)
	}
	st.setStickyCookie(resp.Header)
	st.opts.Compression.apply(r, resp, st.opts.Metrics)
	defer resp.Body.Close()
	return c.writeResponse(st, r, resp, hsts, fr.close)
}

// readBody reads a request body of n bytes, at most fastMaxBody, into
// c.body. With a timeout, each wait for more of it may take that long
// (NGINX's client_body_timeout); a *bodyTimeoutError says it did not.
func (c *fastConn) readBody(n int64, timeout time.Duration) error {
	if c.bodyBuf == nil || int64(len(*c.bodyBuf)) < n {
		if c.bodyBuf != nil {
			putBodyBuf(c.bodyBuf)
		}
		c.bodyBuf = getBodyBuf(n)
	}
	buf := (*c.bodyBuf)[:n]
	for got := 0; got < len(buf); {
		if c.br.Buffered() == 0 {
			c.mu.Lock()
			if t, renew := c.rdl.renew(timeout); renew {
				c.tc.SetReadDeadline(t)
			}
			c.mu.Unlock()
		}
		m, err := c.br.Read(buf[got:])
		got += m
		if err != nil && got < len(buf) {
			if timeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				return &bodyTimeoutError{timeout: timeout, err: err}
			}
			return err
		}
	}
	c.body = bufferedBody{b: buf}
	return nil
}

// releaseBody gives back the buffer of the last request's body.
func (c *fastConn) releaseBody() {
	c.body = bufferedBody{}
	if c.bodyBuf != nil {
		putBodyBuf(c.bodyBuf)
		c.bodyBuf = nil
	}
}

// smallBody is the smaller size of body buffer: most REST bodies fit, and
// a request holds its buffer for as long as its upstream takes.
const smallBody = 2 << 10

// bodyBufs hold the bodies read whole while their requests are served,
// in two sizes: smallBody and fastMaxBody.
var bodyBufs = [2]sync.Pool{
	{New: func() any { b := make([]byte, smallBody); return &b }},
	{New: func() any { b := make([]byte, fastMaxBody); return &b }},
}

// getBodyBuf returns a buffer for a body of n bytes, at most fastMaxBody.
func getBodyBuf(n int64) *[]byte {
	if n <= smallBody {
		return bodyBufs[0].Get().(*[]byte)
	}
	return bodyBufs[1].Get().(*[]byte)
}

func putBodyBuf(b *[]byte) {
	if len(*b) == smallBody {
		bodyBufs[0].Put(b)
	} else {
		bodyBufs[1].Put(b)
	}
}

// bufferedBody is a request body read whole (fastConn.readBody). The
// upstream transport for plain HTTP (h1Transport) writes its bytes after
// the head; anything else reads it, from a copy (detach).
type bufferedBody struct {
	b   []byte
	off int
}

func (b *bufferedBody) Read(p []byte) (int, error) {
	if b.off >= len(b.b) {
		return 0, io.EOF
	}
	n := copy(p, b.b[b.off:])
	b.off += n
	return n, nil
}

func (b *bufferedBody) Close() error { return nil }

// detach returns a reader of a copy of the body, for a transport that may
// read it after the request has ended (http.Transport writes a body from
// a goroutine of its own), when the buffer is another request's.
func (b *bufferedBody) detach() io.ReadCloser {
	return io.NopCloser(bytes.NewReader(bytes.Clone(b.b)))
}

// writeResponse sends the upstream's response to the client: its head
// less the hop-by-hop fields, framed by Content-Length when the upstream
// gave one and chunked otherwise, and its body. It reports whether the
// whole response went out.
func (c *fastConn) writeResponse(st *requestState, req *http.Request, resp *http.Response, hsts []string, closeAfter bool) bool {
	bw := c.bw
	code := resp.StatusCode
	st.rec.status = code
	c.renewSend(st.opts)
	writeStatusLine(bw, code)
	// The upstream's Date goes on with its other fields, as off the fast
	// path; flowgate dates only a response that has none (Date is one
	// field, never two).
	if _, ok := resp.Header["Date"]; !ok {
		writeDate(bw, st.start)
	}
	conn := resp.Header["Connection"]
	idName, rh := st.opts.RequestIDHeader, st.opts.ResponseHeaders
	for k, vv := range resp.Header {
		if responseHopField(k) || len(conn) > 0 && hasToken(conn, k) || k == idName || rh.ruled(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	for _, v := range hsts {
		writeField(bw, "Strict-Transport-Security", v)
	}
	if name := st.opts.RequestIDHeader; name != "" {
		writeField(bw, name, st.requestID[0])
	}
	if rh := st.opts.ResponseHeaders; rh != nil {
		for _, f := range rh.set {
			writeField(bw, f.name, f.value[0])
		}
	}
	noBody := req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	chunked := false
	switch {
	case noBody:
		// A HEAD or 304 response's length is the GET's: pass it on.
		if cl := resp.Header["Content-Length"]; len(cl) > 0 && code != http.StatusNoContent {
			writeField(bw, "Content-Length", cl[0])
		}
	case resp.ContentLength >= 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), resp.ContentLength, 10))
		bw.WriteString("\r\n")
	default:
		chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(resp.Trailer) > 0 {
			keys := make([]string, 0, len(resp.Trailer))
			for k := range resp.Trailer {
				if validFieldName(k) {
					keys = append(keys, k)
				}
			}
			if len(keys) > 0 {
				writeField(bw, "Trailer", strings.Join(keys, ", "))
			}
		}
	}
	if closeAfter || c.s.closing.Load() {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if noBody {
		return bw.Flush() == nil
	}
	// Stream what has no length, and server-sent events, as it arrives.
	flush := chunked || isEventStream(resp.Header)
	buf := c.s.p.bufs.Get().(*copyBuf)
	defer c.s.p.bufs.Put(buf)
	// A chunk goes out as one piece, its size line and CRLF around the
	// data in buf, so that it costs one TLS record and one write, not
	// three. The data is read at chunkData, after room for the size line.
	data := buf[:]
	if chunked {
		data = buf[chunkData : len(buf)-2-len(lastChunk)]
	}
	ended := false // the last chunk went out
	for {
		n, err := resp.Body.Read(data)
		if n > 0 {
			c.renewSend(st.opts)
			out := data[:n]
			if chunked {
				out = frameChunk(buf[:], n)
				// Data that came with the end of the body goes out with
				// the last chunk in one write, when no trailer follows.
				if err == io.EOF && len(resp.Trailer) == 0 {
					out = append(out, lastChunk...)
					ended = true
				}
			}
			bw.Write(out)
			st.rec.bytes += int64(n)
			// What came with the end is flushed once, below.
			if flush && err == nil && bw.Flush() != nil {
				return false
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// The head is sent: what is left is to pass on what came and
			// end the connection short of the announced length (or of
			// the last chunk), which tells the client the response is
			// incomplete, as NGINX does.
			st.opts.Logger.Warn("upstream failed during the response body", "upstream", st.upstream.key, "path", st.path, "err", err)
			bw.Flush()
			return false
		}
	}
	if chunked && !ended {
		bw.WriteString("0\r\n")
		for k, vv := range resp.Trailer {
			if !validFieldName(k) {
				continue
			}
			for _, v := range vv {
				writeField(bw, k, v)
			}
		}
		bw.WriteString("\r\n")
	}
	return bw.Flush() == nil
}

// chunkData is where a chunk's data starts in its buffer: after room for
// its size in hex and a CRLF.
const chunkData = 16 + 2

// lastChunk ends a chunked body that has no trailer.
const lastChunk = "0\r\n\r\n"

// frameChunk frames the n bytes of data at buf[chunkData:] as a chunk, in
// place, and returns it.
func frameChunk(buf []byte, n int) []byte {
	var size [16]byte
	hex := strconv.AppendInt(size[:0], int64(n), 16)
	start := chunkData - len(hex) - 2
	copy(buf[start:], hex)
	copy(buf[chunkData-2:], "\r\n")
	copy(buf[chunkData+n:], "\r\n")
	return buf[start : chunkData+n+2]
}

// responseHopField reports the response fields that are not forwarded, or
// that writeResponse writes itself.
func responseHopField(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length":
		return true
	}
	return false
}

func isEventStream(h http.Header) bool {
	const es = "text/event-stream"
	ct := h["Content-Type"]
	return len(ct) > 0 && len(ct[0]) >= len(es) && strings.EqualFold(ct[0][:len(es)], es)
}

// writeAnswer sends a response flowgate made itself (errorWriter).
func (c *fastConn) writeAnswer(st *requestState, ew *errorWriter, hsts []string, closeAfter bool) bool {
	bw := c.bw
	code := ew.code
	if code == 0 {
		code = http.StatusOK
	}
	st.rec.status = code
	c.renewSend(st.opts)
	writeStatusLine(bw, code)
	writeDate(bw, st.start)
	for k, vv := range ew.h {
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	for _, v := range hsts {
		writeField(bw, "Strict-Transport-Security", v)
	}
	if name := st.opts.RequestIDHeader; name != "" {
		writeField(bw, name, st.requestID[0])
	}
	if rh := st.opts.ResponseHeaders; rh != nil {
		for _, f := range rh.set {
			if _, own := ew.h[f.name]; !own { // flowgate's own value wins, as off the fast path
				writeField(bw, f.name, f.value[0])
			}
		}
	}
	bw.WriteString("Content-Length: ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(ew.body)), 10))
	bw.WriteString("\r\n")
	if closeAfter || c.s.closing.Load() {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if st.method != http.MethodHead {
		// A HEAD gets the GET's length and no body.
		bw.Write(ew.body)
		st.rec.bytes = int64(len(ew.body))
	}
	return bw.Flush() == nil
}

// errorWriter collects a response flowgate answers itself (429, 403, 502,
// 503, 504), so that the fast path can frame it.
type errorWriter struct {
	h    http.Header
	code int
	body []byte
}

func (w *errorWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header)
	}
	return w.h
}

func (w *errorWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *errorWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, b...)
	return len(b), nil
}

// got1xx passes an informational response (103 Early Hints) on to the
// client at once.
func (c *fastConn) got1xx(code int, h textproto.MIMEHeader) error {
	c.renewSend(c.st.opts)
	writeStatusLine(c.bw, code)
	for k, vv := range h {
		for _, v := range vv {
			writeField(c.bw, k, v)
		}
	}
	c.bw.WriteString("\r\n")
	return c.bw.Flush()
}

// renewSend renews the client's write deadline for o.SendTimeout before a
// write (none if it is not set), so that a client that stops reading is
// cut, as NGINX's send_timeout does.
func (c *fastConn) renewSend(o *Options) {
	if o == nil || o.SendTimeout <= 0 {
		return
	}
	if t, renew := c.wdl.renew(o.SendTimeout); renew {
		c.tc.SetWriteDeadline(t)
	}
}

func writeStatusLine(bw *bufio.Writer, code int) {
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// writeDate writes the Date field, as net/http's server does, for a
// request that arrived at now. The field is formatted once a second.
func writeDate(bw *bufio.Writer, now time.Time) {
	d := lastDate.Load()
	if d == nil || d.unix != now.Unix() {
		line := append(now.UTC().AppendFormat([]byte("Date: "), http.TimeFormat), "\r\n"...)
		d = &dateField{unix: now.Unix(), line: line}
		lastDate.Store(d)
	}
	bw.Write(d.line)
}

type dateField struct {
	unix int64
	line []byte
}

var lastDate atomic.Pointer[dateField]

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// startWatch arms the client watch for a request that is sent upstream.
func (c *fastConn) startWatch() {
	c.watching = true
	if c.watch == nil {
		c.watch = time.AfterFunc(clientWatchAfter, c.watchClient)
		return
	}
	c.watch.Reset(clientWatchAfter)
}

// stopWatch ends the client watch before the connection is read again.
func (c *fastConn) stopWatch() {
	if !c.watching {
		return
	}
	c.watching = false
	if c.watch.Stop() {
		return
	}
	// The watch has started: unblock its read, or keep it from reading,
	// and wait for its end. The next read sets its own deadline.
	c.mu.Lock()
	c.watchStopped = true
	c.tc.SetReadDeadline(aLongTimeAgo)
	c.rdl.set(aLongTimeAgo)
	c.mu.Unlock()
	<-c.watched
	c.watchStopped = false
}

// watchClient reads ahead on the client's connection while its request
// is upstream, as net/http's server does during every request: an error
// (the end of the stream, a TLS close alert, a reset) means the client
// went away, and the request is cancelled. Data (a pipelined request)
// ends the watch and stays in the read buffer. stopWatch ends a watch that
// is still waiting with a read deadline, the only one set at that time.
func (c *fastConn) watchClient() {
	defer func() { c.watched <- struct{}{} }()
	c.mu.Lock()
	if c.watchStopped {
		c.mu.Unlock()
		return
	}
	c.tc.SetReadDeadline(time.Time{})
	c.rdl.set(time.Time{})
	c.mu.Unlock()
	_, err := c.br.Peek(1)
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.cancel()
	}
}

// track adds a connection; false once the server is shutting down.
func (s *ConnServer) track(c *fastConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *ConnServer) untrack(c *fastConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// setIdle marks the connection idle (waiting for a request) or busy; going
// idle renews the read deadline for a wait of timeout (none if it is not
// positive) and returns the deadline in force. Both happen under c.mu, so
// that Shutdown's deadline for an idle connection is never overwritten.
// Going idle fails once the server is shutting down.
func (c *fastConn) setIdle(idle bool, timeout time.Duration) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if idle && c.s.closing.Load() {
		return time.Time{}, false
	}
	c.idle = idle
	if !idle {
		return time.Time{}, true
	}
	deadline, renew := c.rdl.renew(timeout)
	if renew {
		c.tc.SetReadDeadline(deadline)
	}
	return deadline, true
}

// Shutdown stops serving: idle connections close at once, busy ones after
// their response (which says "Connection: close"). It returns when every
// connection has closed, or closes the rest when ctx ends and returns its
// error.
func (s *ConnServer) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for c := range s.conns {
		c.mu.Lock()
		if c.idle {
			c.tc.SetReadDeadline(aLongTimeAgo)
			c.rdl.set(aLongTimeAgo)
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes every connection at once.
func (s *ConnServer) Close() {
	s.closing.Store(true)
	s.mu.Lock()
	conns := make([]*fastConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.tc.NetConn().Close()
	}
}
