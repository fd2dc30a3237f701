package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// h1Transport carries the requests that have neither a body nor an upgrade
// (GET, HEAD, most of what a Flowable frontend sends) to one upstream over
// HTTP/1.1, on the goroutine of the request. http.Transport runs a reader
// and a writer goroutine per connection and hands every request and
// response between them and the caller over channels: three goroutine
// switches per request, which profiles of the keep-alive benchmark showed
// costing more CPU than flowgate's own request handling. Here the caller
// takes an idle connection, writes the request, reads the response head
// and hands the connection back once the body is read; a context watch
// unblocks it when the client goes away.
//
// A request with a body comes here only when the body was read whole
// first and is at most fastMaxBody (bufferedBody): it goes out with the
// head in one write that the socket buffers take, so an upstream that
// answers early (413, 401) cannot leave the write hanging. Streamed bodies
// stay on http.Transport, whose concurrent writer lets such an upstream
// answer before it has read them; so do upgrades, which have their own
// transport.
type h1Transport struct {
	addr      string
	tlsConfig *tls.Config // nil: plain TCP
	dialer    net.Dialer
	// headerTimeout bounds the wait for a response head; readTimeout,
	// when above zero, each wait for body data.
	headerTimeout time.Duration
	readTimeout   time.Duration
	idleTimeout   time.Duration
	maxIdle       int
	now           func() time.Time

	mu sync.Mutex
	// idle holds the pooled connections, the most recently used last: they
	// are taken from the end, so the oldest age out at the front.
	idle []*h1Conn
	// sweep closes connections idle past idleTimeout; nil while idle is
	// empty.
	sweep *time.Timer
	// retired: the upstream has left; connections are closed, not pooled.
	retired bool
}

// maxResponseHeaderBytes bounds a response head; an upstream that sends
// more fails the request rather than growing flowgate's memory.
const maxResponseHeaderBytes = 1 << 20

// max1xx bounds the informational responses before the final one.
const max1xx = 5

var errTooMany1xx = fmt.Errorf("upstream sent more than %d informational responses", max1xx)

func newH1Transport(u string, tlsConfig *tls.Config, o TransportOptions, now func() time.Time) *h1Transport {
	return &h1Transport{
		addr:          u,
		tlsConfig:     tlsConfig,
		dialer:        net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second},
		headerTimeout: o.ResponseHeaderTimeout,
		readTimeout:   o.ReadTimeout,
		idleTimeout:   o.IdleConnTimeout,
		maxIdle:       o.MaxIdleConnsPerHost,
		now:           now,
	}
}

// canCarry reports whether req is one h1Transport takes: no body or one
// read whole, and no upgrade.
func canCarry(req *http.Request) bool {
	switch req.Body.(type) {
	case nil, *bufferedBody:
	default:
		if req.Body != http.NoBody {
			return false
		}
	}
	return req.Header.Get("Upgrade") == ""
}

// RoundTrip sends req, which canCarry must have let through, on a pooled
// or new connection. A pooled connection
// that the upstream closed while it was idle is found out before use, or,
// if the upstream closes it at the moment of use, the request is sent again
// on a new connection when it is idempotent.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.roundTrip(req, nil, t.now())
}

// roundTrip is RoundTrip with the response built in rb (see
// parseSimpleResponse) and now, the time on the transport's clock that
// the request started, to judge idle connections by.
func (t *h1Transport) roundTrip(req *http.Request, rb *responseBuf, now time.Time) (*http.Response, error) {
	var sent error // the failure of an attempt that may have reached the upstream
	for fresh := false; ; fresh = true {
		c, err := t.get(req.Context(), fresh, now)
		if err != nil {
			if sent != nil {
				// Not a connect failure to the caller, which would send
				// the request to another upstream as one that never went
				// out.
				return nil, sent
			}
			return nil, err
		}
		resp, err := c.roundTrip(req, rb)
		if err == nil {
			return resp, nil
		}
		var stale *staleConnError
		if !c.reused || !errors.As(err, &stale) || !(stale.unsent || idempotent(req)) || req.Context().Err() != nil {
			return nil, err
		}
		if !stale.unsent {
			sent = err
		}
		// Once more, on a new connection: the pool may hold more that the
		// upstream closed at the same time.
	}
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// staleConnError is a failure on a connection before any byte of the
// response arrived, the sign of an upstream that closed a kept-alive
// connection. unsent means the request could not even be written.
type staleConnError struct {
	err    error
	unsent bool
}

func (e *staleConnError) Error() string { return e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

// get takes the most recently used live idle connection, one idle for less
// than the idle timeout at now, or, with fresh or none left, dials a new
// one.
func (t *h1Transport) get(ctx context.Context, fresh bool, now time.Time) (*h1Conn, error) {
	if fresh {
		return t.dial(ctx)
	}
	t.mu.Lock()
	for n := len(t.idle); n > 0; n = len(t.idle) {
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		// A pollConn is checked within the read of the response
		// (pollConn.hold), just before the request goes out.
		if now.Sub(c.idleSince) < t.idleTimeout && (c.pc != nil || c.alive()) {
			c.reused = true
			return c, nil
		}
		c.nc.Close()
		t.mu.Lock()
	}
	t.mu.Unlock()
	return t.dial(ctx)
}

func (t *h1Transport) dial(ctx context.Context) (*h1Conn, error) {
	nc, err := dialUpstream(ctx, &t.dialer, t.addr, t.tlsConfig)
	if err != nil {
		return nil, err
	}
	if t.tlsConfig == nil {
		nc = newPollConn(nc)
	}
	c := &h1Conn{t: t, nc: nc, fd: -1}
	c.pc, _ = nc.(*pollConn)
	tcp := nc
	if tc, ok := nc.(*tls.Conn); ok {
		tcp = tc.NetConn()
	}
	if sc, ok := tcp.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) { c.fd = int(fd) })
		}
	}
	c.abortFn = c.abort
	return c, nil
}

// dialUpstream connects to an upstream and, with tlsConfig, completes the
// TLS handshake within the dialer's timeout (0: no limit).
func dialUpstream(ctx context.Context, d *net.Dialer, addr string, tlsConfig *tls.Config) (net.Conn, error) {
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || tlsConfig == nil {
		return nc, err
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	tc := tls.Client(nc, tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, &handshakeError{addr: addr, err: err}
	}
	return tc, nil
}

// handshakeError is a failed TLS handshake with an upstream: nothing of
// the request went out, so any request may go to another upstream.
type handshakeError struct {
	addr string
	err  error
}

func (e *handshakeError) Error() string { return "TLS handshake with " + e.addr + ": " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// put pools a connection whose response was read to the end, or closes it
// when the pool is full.
func (t *h1Transport) put(c *h1Conn) {
	c.idleSince = t.now()
	t.mu.Lock()
	if t.retired || len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle = append(t.idle, c)
	if t.sweep == nil {
		t.sweep = time.AfterFunc(t.idleTimeout, t.closeExpired)
	}
	t.mu.Unlock()
}

// closeExpired closes the connections idle for idleTimeout or longer and
// arms itself for the next one to expire.
func (t *h1Transport) closeExpired() {
	now := t.now()
	t.mu.Lock()
	n := 0
	for n < len(t.idle) && now.Sub(t.idle[n].idleSince) >= t.idleTimeout {
		n++
	}
	expired := make([]*h1Conn, n)
	copy(expired, t.idle[:n])
	rest := copy(t.idle, t.idle[n:])
	clear(t.idle[rest:])
	t.idle = t.idle[:rest]
	if len(t.idle) > 0 {
		t.sweep.Reset(t.idleTimeout - now.Sub(t.idle[0].idleSince))
	} else {
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.nc.Close()
	}
}

// CloseIdleConnections closes every pooled connection. Connections in use
// are pooled again when their response ends.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// retire closes the idle connections and every one that ends from now on.
func (t *h1Transport) retire() {
	t.mu.Lock()
	t.retired = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

// idleConns is the number of pooled connections.
func (t *h1Transport) idleConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// h1Conn is one connection to the upstream. It carries one request at a
// time; between requests it sits in the pool.
type h1Conn struct {
	t  *h1Transport
	nc net.Conn
	fd int           // the TCP socket's descriptor, for the liveness check; -1 if unknown
	pc *pollConn     // nc, when a request can be sent within the read of its response; else nil
	br *bufio.Reader // reads through the h1Conn (Read below); nil while idle

	reused    bool
	idleSince time.Time
	abortFn   func() // c.abort, made once

	// The watch on the request's context that aborts the connection when
	// the context ends: a fast-path connection's (watch), or one
	// context.AfterFunc per request (stopAfter).
	watch     *abortWatch
	stopAfter func() bool

	// rdl is the read deadline, renewed lazily (keptDeadline). abort,
	// which may run on another goroutine, leaves it be: the connection is
	// not used after that.
	rdl keptDeadline

	// Per request.
	w         countingWriter  // what the request is written to: nc, counted
	ctx       context.Context // the request's; its end expires the deadlines
	got       int64           // bytes read since the request was written
	headLimit int64           // bytes the response head may still take; < 0 once it is read
}

// countingWriter counts the bytes its writer took.
type countingWriter struct {
	w io.Writer
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

// aLongTimeAgo is a deadline that makes every blocked read or write on a
// connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

var errResponseHeadTooLarge = fmt.Errorf("upstream response head larger than %d bytes", maxResponseHeaderBytes)

// Read is what the connection's bufio.Reader reads from: it counts bytes,
// bounds the response head and, while a body is read, renews the read
// timeout before each wait.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.headLimit >= 0 {
		if c.headLimit == 0 {
			return 0, errResponseHeadTooLarge
		}
		if int64(len(p)) > c.headLimit {
			p = p[:c.headLimit]
		}
	} else if c.t.readTimeout > 0 {
		if err := c.renewReadDeadline(c.ctx, c.t.readTimeout); err != nil {
			return 0, err
		}
	}
	n, err := c.nc.Read(p)
	c.got += int64(n)
	if c.headLimit > 0 {
		c.headLimit -= int64(n)
	}
	return n, err
}

// abort unblocks a connection whose client went away. The connection is
// not pooled again.
func (c *h1Conn) abort() { c.nc.SetDeadline(aLongTimeAgo) }

// roundTrip writes req and reads the response head. On success the
// connection belongs to the response body until it is closed.
func (c *h1Conn) roundTrip(req *http.Request, rb *responseBuf) (*http.Response, error) {
	ctx := req.Context()
	c.startWatch(ctx)
	fail := func(err error) (*http.Response, error) {
		c.stopWatch()
		c.releaseReader()
		c.nc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, err
	}
	c.got, c.headLimit = 0, maxResponseHeaderBytes
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(c)
	bw := h1Writers.Get().(*bufio.Writer)
	c.w = countingWriter{w: c.nc}
	bw.Reset(&c.w)
	if c.pc != nil {
		c.pc.hold(c.reused) // the request goes out within the first read of the response
	}
	err := writeRequest(bw, req)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	h1Writers.Put(bw)
	if err != nil {
		// Once any of it went out the upstream may have acted on it: only
		// an idempotent request is sent again.
		return fail(&staleConnError{err: err, unsent: c.w.n == 0})
	}
	c.ctx = ctx
	if err := c.renewReadDeadline(ctx, c.headTimeout()); err != nil {
		return fail(err)
	}
	resp, err := readResponse(c.br, req, rb)
	if err != nil {
		var held *heldWriteError
		if errors.As(err, &held) {
			err = &staleConnError{err: held.err, unsent: !held.sent}
		} else if c.got == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
			err = &staleConnError{err: err}
		}
		return fail(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("upstream switched protocols for a request that asked for no upgrade"))
	}
	c.headLimit = -1
	if c.t.readTimeout <= 0 {
		if err := c.renewReadDeadline(ctx, 0); err != nil {
			return fail(err)
		}
	}
	keep := !resp.Close
	if resp.Body == http.NoBody {
		c.done(keep)
		return resp, nil
	}
	var body *h1Body
	if rb != nil {
		body = &rb.h1
	} else {
		body = new(h1Body)
	}
	*body = h1Body{c: c, body: resp.Body, keep: keep}
	resp.Body = body
	return resp, nil
}

// writeRequest writes a request without a body, or with one read whole
// (bufferedBody), as Request.Write would, without its allocations per
// request: the request line, Host and the header fields (an empty
// User-Agent left out; no default one added), Content-Length, and the
// body. A CR or LF in a value, which neither net/http's
// server nor the fast path lets in, goes out as a space; a field with an
// invalid name is left out.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validHostHeader(host) {
		return fmt.Errorf("invalid Host %q for the upstream request", host)
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	writeRequestURI(bw, req.URL)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "Expect":
			// The body, if any, goes with the head: there is nothing to
			// wait for (net/http's server answered the client's 100).
			continue
		}
		if !validFieldName(k) {
			continue
		}
		for _, v := range vv {
			if v == "" && k == "User-Agent" {
				continue
			}
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			writeField(bw, k, v)
		}
	}
	if req.Close {
		bw.WriteString("Connection: close\r\n")
	}
	var body []byte
	if b, ok := req.Body.(*bufferedBody); ok {
		body = b.b
	}
	switch {
	case len(body) > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(body)), 10))
		bw.WriteString("\r\n")
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		// A request of a method that has a body states that it has none,
		// as net/http sends it.
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
	_, err := bw.Write(body)
	return err
}

// writeRequestURI writes u.RequestURI() without building it.
func writeRequestURI(bw *bufio.Writer, u *url.URL) {
	if u.Opaque != "" {
		bw.WriteString(u.RequestURI())
		return
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	bw.WriteString(path)
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(u.RawQuery)
	}
}

// validHostHeader reports whether h may be sent as a Host field: RFC
// 3986's host and port characters (letters, digits, "-._~", "%" for
// escapes, "!$&'()*+,;=", ":" and brackets), as net/http checks it.
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~%!$&'()*+,;=:[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// readResponse reads the head of the final response to req, or of a 101:
// the informational responses before it (103 Early Hints) go to the trace
// httputil.ReverseProxy installs, which passes them on to the client; 100
// Continue means nothing to a request flowgate has sent whole. A simple
// response is built in rb (parseSimpleResponse).
func readResponse(br *bufio.Reader, req *http.Request, rb *responseBuf) (*http.Response, error) {
	trace := httptrace.ContextClientTrace(req.Context())
	for range max1xx + 1 {
		resp, ok := parseSimpleResponse(br, req, rb)
		if !ok {
			var err error
			if resp, err = http.ReadResponse(br, req); err != nil {
				return nil, err
			}
			// net/http's parser lets a field name with a space through
			// (go.dev/issue/34540); net/http's server would drop it, and
			// so does flowgate. The fast parser takes only valid names.
			for k := range resp.Header {
				if !validFieldName(k) {
					delete(resp.Header, k)
				}
			}
		}
		code := resp.StatusCode
		if code < 100 || code >= 200 || code == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if code != http.StatusContinue && trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
	return nil, errTooMany1xx
}

// setReadDeadline sets conn's read deadline unless ctx has ended: the
// deadline in the past that the context's end set must not be undone.
func setReadDeadline(ctx context.Context, conn net.Conn, t time.Time) error {
	if err := conn.SetReadDeadline(t); err != nil {
		return err
	}
	return ctx.Err()
}

// renewReadDeadline renews the read deadline for a timeout d from now
// (none if d is not positive) unless ctx has ended: the deadline in the
// past that the context's end set must not be undone.
func (c *h1Conn) renewReadDeadline(ctx context.Context, d time.Duration) error {
	if t, renew := c.rdl.renew(d); renew {
		if err := c.nc.SetReadDeadline(t); err != nil {
			c.rdl.forget()
			return err
		}
	}
	return ctx.Err()
}

// headTimeout is how long the response head may take to arrive: the
// header timeout, or the read timeout if that is shorter.
func (c *h1Conn) headTimeout() time.Duration {
	d := c.t.headerTimeout
	if rt := c.t.readTimeout; rt > 0 && rt < d {
		d = rt
	}
	return d
}

// done ends a request: the connection goes back to the pool when the
// response allowed it and the client's context watch never fired.
func (c *h1Conn) done(keep bool) {
	c.ctx = nil
	// Bytes past the end of the response would be read as the next
	// response: an upstream that sends them loses the connection.
	excess := c.br.Buffered() > 0
	c.releaseReader()
	if !c.stopWatch() || !keep || excess {
		c.nc.Close()
		return
	}
	c.t.put(c)
}

// startWatch arms the abort of the connection for when ctx ends.
func (c *h1Conn) startWatch(ctx context.Context) {
	if w, ok := ctx.Value(abortWatchKey{}).(*abortWatch); ok {
		c.watch = w
		w.start(c)
		return
	}
	c.stopAfter = context.AfterFunc(ctx, c.abortFn)
}

// stopWatch disarms it. It reports false when the context ended first:
// the connection may have been aborted.
func (c *h1Conn) stopWatch() bool {
	if w := c.watch; w != nil {
		c.watch = nil
		return w.stop()
	}
	stop := c.stopAfter
	c.stopAfter = nil
	return stop()
}

// An abortWatch aborts the upstream connection that a client
// connection's current request uses when the client connection's context
// ends. A fast-path connection puts one in its context (withAbortWatch):
// one context.AfterFunc for the connection's life instead of one per
// request, which costs allocations and the context's lock twice.
type abortWatch struct {
	mu    sync.Mutex
	cur   *h1Conn
	fired bool
}

type abortWatchKey struct{}

// withAbortWatch returns ctx with an abortWatch for the requests that carry
// it, one at a time.
func withAbortWatch(ctx context.Context) context.Context {
	w := new(abortWatch)
	context.AfterFunc(ctx, w.fire)
	return context.WithValue(ctx, abortWatchKey{}, w)
}

func (w *abortWatch) fire() {
	w.mu.Lock()
	w.fired = true
	if w.cur != nil {
		w.cur.abort()
	}
	w.mu.Unlock()
}

func (w *abortWatch) start(c *h1Conn) {
	w.mu.Lock()
	w.cur = c
	if w.fired {
		c.abort()
	}
	w.mu.Unlock()
}

// stop reports false when the context ended while c was watched.
func (w *abortWatch) stop() bool {
	w.mu.Lock()
	w.cur = nil
	ok := !w.fired
	w.mu.Unlock()
	return ok
}

// The buffers a connection reads and writes with are taken from pools for
// each request and given back when it ends, so that a pooled connection
// holds none. The reader is large enough that a chunked body arrives in
// few pieces: httputil.ReverseProxy flushes each piece to the client.
var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func (c *h1Conn) releaseReader() {
	c.br.Reset(nil)
	h1Readers.Put(c.br)
	c.br = nil
}

// h1Body is a response body; closing it after it was read to the end pools
// the connection, closing it earlier closes the connection.
type h1Body struct {
	c      *h1Conn
	body   io.ReadCloser
	keep   bool
	eof    bool
	closed bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("read on a closed upstream response body")
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.c.done(b.keep && b.eof)
	return nil
}
