package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/discovery"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Proxy. The zero value of each field has the meaning
// its comment gives; withDefaults fills the rest.
type Options struct {
	// Balance is the load-balancing method; "" is round robin.
	Balance Balance
	// StickyCookie names a cookie that pins a browser to the upstream that
	// served it first (Flowable needs this for long polling and OpenID
	// Connect). Empty disables stickiness.
	StickyCookie string
	// TrustedProxies are the peers whose X-Forwarded-For chain is kept.
	TrustedProxies TrustedProxies
	// Paths blocks request paths; nil blocks nothing.
	Paths *PathPolicy
	// ForwardedPort is sent as X-Forwarded-Port ("443" when empty).
	ForwardedPort string
	// MaxFails failures within FailTimeout take an upstream out for
	// FailTimeout (NGINX max_fails/fail_timeout). 0 disables passive health.
	MaxFails int
	// FailTimeout is the passive-health window; 0 means 10s.
	FailTimeout time.Duration
	// RetryIdempotent retries GET, HEAD, OPTIONS and TRACE requests without a
	// body on another upstream after any failure before a response arrived.
	// Connect failures are retried for every method regardless: nothing was
	// sent.
	RetryIdempotent bool
	// MaxAttempts bounds the upstreams tried per request; 0 means 3.
	MaxAttempts int
	// DrainTimeout is how long WebSockets to an upstream that left the set
	// stay open; 0 keeps them open until either side closes them.
	DrainTimeout time.Duration
	// MaxWebSockets bounds concurrent WebSockets; 0 means no limit.
	MaxWebSockets int
	// MaxBodyBytes bounds request bodies (413 beyond); 0 means no limit.
	MaxBodyBytes int64
	// ClientBodyTimeout bounds each wait for the next piece of a request
	// body, as NGINX's client_body_timeout: a client that stops sending
	// gets 408 and its upstream request is cut. 0 means no limit.
	ClientBodyTimeout time.Duration
	// SendTimeout bounds each wait to write a response, or what the
	// upstream sends through a WebSocket, to the client, as NGINX's
	// send_timeout: a client that stops reading is cut, and its upstream
	// response or WebSocket with it. 0 means no limit.
	SendTimeout time.Duration
	// RateLimit, when set, limits requests per client address (the client
	// as TrustedProxies determine it): 429 with Retry-After beyond it. Nil
	// means no limit. Keep the same limiter across SetOptions to keep the
	// clients' state.
	RateLimit *RateLimiter
	// NoUpstreamRetryAfter is the Retry-After sent with a 503 when the set is
	// empty; 0 means 5s.
	NoUpstreamRetryAfter time.Duration
	// RequestIDHeader, when set, names the header that carries each
	// request's ID (requestid.go) to the upstream, back to the client and
	// into the access log, such as X-Request-Id (canonical form: see
	// CheckRequestIDHeader). Empty: no request IDs.
	RequestIDHeader string
	// ResponseHeaders are set on, or removed from, every response; nil
	// changes none.
	ResponseHeaders *ResponseHeaders
	// Compression gzips the nodes' responses for clients that take it;
	// nil compresses nothing.
	Compression *Compression
	// ErrorPages replace the text of flowgate's own 502, 503 and 504
	// answers for clients that take HTML; nil replaces none.
	ErrorPages *ErrorPages
	// SlowStart, when above 0, ramps up the requests an upstream takes
	// over this long after it joins a running set, comes back from
	// passive ejection or passes its health checks again: from a tenth of
	// its share to all of it, so that a node that just started (a JVM
	// still compiling its code) is not handed its full share cold. Not
	// with IPHash, which keeps each client on its node.
	SlowStart time.Duration
	// HealthCheck configures active health checks; its zero value has
	// none.
	HealthCheck HealthCheck
	// Transport configures connections to upstreams.
	Transport TransportOptions
	// Logger receives error logs; nil discards them.
	Logger *slog.Logger
	// AccessLog, when set, receives one line per request.
	AccessLog *slog.Logger
	// Metrics records request metrics; nil records nothing.
	Metrics *Metrics
	// Registerer, when set, receives the per-upstream state collector.
	Registerer prometheus.Registerer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// TransportOptions configure the connections to upstreams.
type TransportOptions struct {
	// DialTimeout bounds a TCP connect; 0 means 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request was sent; 0 means 60s (NGINX proxy_read_timeout).
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes pooled connections idle this long; 0 means 90s.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost sizes the keep-alive pool per upstream; 0 means 256
	// (Go's default of 2 causes connection churn under load).
	MaxIdleConnsPerHost int
	// ReadTimeout bounds each wait for data from an upstream, so that one
	// that stops in the middle of a response does not hold the client
	// forever (NGINX proxy_read_timeout). It does not apply to WebSockets.
	// 0 means no limit.
	ReadTimeout time.Duration
	// TLS is used for upstreams reached over HTTPS; nil uses the system roots.
	TLS *tls.Config
}

func (o Options) withDefaults() Options {
	if o.RequestIDHeader != "" {
		o.RequestIDHeader = textproto.CanonicalMIMEHeaderKey(o.RequestIDHeader)
	}
	if o.Balance == "" {
		o.Balance = RoundRobin
	}
	if o.ForwardedPort == "" {
		o.ForwardedPort = "443"
	}
	if o.FailTimeout <= 0 {
		o.FailTimeout = 10 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.NoUpstreamRetryAfter <= 0 {
		o.NoUpstreamRetryAfter = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &o.Transport
	if t.DialTimeout <= 0 {
		t.DialTimeout = 5 * time.Second
	}
	if t.ResponseHeaderTimeout <= 0 {
		t.ResponseHeaderTimeout = 60 * time.Second
	}
	if t.IdleConnTimeout <= 0 {
		t.IdleConnTimeout = 90 * time.Second
	}
	if t.MaxIdleConnsPerHost <= 0 {
		t.MaxIdleConnsPerHost = 256
	}
	return o
}

// Errors the proxy reports to its error handler.
var (
	// ErrNoUpstream means no upstream is in the set or every one is ejected.
	ErrNoUpstream     = errors.New("no healthy upstream")
	errWebSocketLimit = errors.New("websocket limit reached")
)

// Proxy is an http.Handler that forwards requests to the current upstream
// set. Create it with New; it is safe for concurrent use.
type Proxy struct {
	opts atomic.Pointer[Options]
	set  atomic.Pointer[upstreamSet]
	rp   *httputil.ReverseProxy
	now  func() time.Time

	mu       sync.Mutex
	known    map[string]*upstream // every upstream in the set or draining
	draining map[*upstream]*time.Timer
	// lingering are removed upstreams whose drain ended with WebSockets
	// left open (DrainTimeout 0); Close and Shutdown still end those.
	lingering map[*upstream]struct{}
	closed    bool
	// Active health checks (healthcheck.go): checkDone is the running
	// loop's, nil when none runs; checkWake starts its next round at once
	// (new options); checkCtx ends with the proxy.
	checkDone     chan struct{}
	checkWake     chan struct{}
	checkCtx      context.Context
	checkCancel   context.CancelFunc
	checksIgnored bool // every upstream fails its checks: none is taken out

	websockets atomic.Int64
	bufs       sync.Pool
}

// New creates a Proxy with an empty upstream set.
func New(opts Options) *Proxy {
	o := opts.withDefaults()
	p := &Proxy{
		now:       o.Now,
		known:     make(map[string]*upstream),
		draining:  make(map[*upstream]*time.Timer),
		lingering: make(map[*upstream]struct{}),
	}
	p.opts.Store(&o)
	p.checkCtx, p.checkCancel = context.WithCancel(context.Background())
	p.checkWake = make(chan struct{}, 1)
	p.set.Store(newUpstreamSet(nil, nil))
	p.bufs.New = func() any { return new(copyBuf) }
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      roundTripper{p},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		BufferPool:     bufferPool{p},
		ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(newUpstreamCollector(p))
	}
	return p
}

// SetOptions applies new options (after a configuration reload). Transport
// options apply to upstreams that join the set from now on.
func (p *Proxy) SetOptions(opts Options) {
	o := opts.withDefaults()
	p.opts.Store(&o)
	p.mu.Lock()
	p.startCheckerLocked(&o)
	p.mu.Unlock()
	select {
	case p.checkWake <- struct{}{}: // a running loop applies them now
	default:
	}
}

func (p *Proxy) options() *Options { return p.opts.Load() }

// SetUpstreams replaces the upstream set. Upstreams that stay keep their
// state; new ones start healthy; removed ones drain: in-flight requests
// finish, idle connections close, and WebSockets are closed after
// DrainTimeout. It reports whether the set changed.
func (p *Proxy) SetUpstreams(list []discovery.Upstream) bool {
	o := p.options()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	old := p.set.Load()
	next := make([]*upstream, 0, len(list))
	weights := make([]int, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, du := range list {
		k := du.Key()
		if seen[k] {
			continue
		}
		seen[k] = true
		u, ok := p.known[k]
		if !ok {
			u = newUpstream(du, p.newTransport(du, o.Transport, o.Transport.ReadTimeout), o.Metrics.forUpstream(k))
			// WebSockets idle for long stretches: their connections get no
			// read timeout.
			u.wsTransport = newUpgradeTransport(du, o.Transport)
			u.h1 = newH1Transport(du.Addr, upstreamTLS(du, o.Transport), o.Transport, p.now)
			p.known[k] = u
		}
		if t, ok := p.draining[u]; ok { // came back before its drain ended
			t.Stop()
			delete(p.draining, u)
		}
		if len(old.list) > 0 && !slices.Contains(old.list, u) {
			// Joining a set that serves already: a slow start, if any.
			// The first set starts whole.
			u.warmFrom(p.now())
		}
		next = append(next, u)
		weights = append(weights, max(du.Weight, 1))
	}
	if sameSet(old, next, weights) {
		return false
	}
	p.set.Store(newUpstreamSet(next, weights))
	p.startCheckerLocked(o)
	for _, u := range old.list {
		if seen[u.key] {
			continue
		}
		p.drainLocked(u, o)
	}
	return true
}

func sameSet(old *upstreamSet, next []*upstream, weights []int) bool {
	if len(old.list) != len(next) {
		return false
	}
	for i := range next {
		if old.list[i] != next[i] || old.weights[i] != weights[i] {
			return false
		}
	}
	return true
}

// drainLocked starts draining an upstream that left the set. p.mu is held.
func (p *Proxy) drainLocked(u *upstream, o *Options) {
	u.closeIdle()
	o.Logger.Info("upstream removed; draining", "upstream", u.key, "in_flight", u.inflight.Load(), "drain_timeout", o.DrainTimeout)
	p.draining[u] = time.AfterFunc(max(o.DrainTimeout, 0), func() { p.finishDrain(u, o.DrainTimeout > 0) })
}

// finishDrain closes what is left of a removed upstream.
func (p *Proxy) finishDrain(u *upstream, closeSockets bool) {
	p.mu.Lock()
	if _, ok := p.draining[u]; !ok {
		p.mu.Unlock()
		return // it came back
	}
	delete(p.draining, u)
	delete(p.known, u.key)
	if !closeSockets && u.socketCount() > 0 {
		p.lingering[u] = struct{}{}
	}
	p.mu.Unlock()
	if closeSockets {
		if n := u.closeSockets(); n > 0 {
			p.options().Logger.Info("closed websockets to removed upstream", "upstream", u.key, "count", n)
		}
	}
	u.retire()
	u.metrics.forget()
}

// Close stops drain timers and closes every proxied WebSocket and idle
// upstream connection at once. Shutdown is the graceful variant.
func (p *Proxy) Close() {
	for _, u := range p.stop() {
		u.closeSockets()
		u.retire()
	}
	p.mu.Lock()
	done := p.checkDone
	p.mu.Unlock()
	if done != nil {
		<-done // its checks were cut
	}
}

// Shutdown closes the proxied WebSockets cleanly: each upstream is sent a
// close frame (1001, going away) on the client's behalf, and its answering
// close frame reaches the client. Sockets still open when ctx is done are
// closed hard. Call it after the HTTP servers have shut down.
func (p *Proxy) Shutdown(ctx context.Context) {
	all := p.stop()
	for _, u := range all {
		for _, c := range u.socketList() {
			c.goAway()
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for p.websockets.Load() > 0 {
		select {
		case <-ctx.Done():
			p.Close()
			return
		case <-t.C:
		}
	}
	p.Close()
}

// stop marks the proxy closed, stops drain timers and returns every known
// upstream.
func (p *Proxy) stop() []*upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.checkCancel()
	for u, t := range p.draining {
		t.Stop()
		delete(p.draining, u)
	}
	all := make([]*upstream, 0, len(p.known)+len(p.lingering))
	for _, u := range p.known {
		all = append(all, u)
	}
	for u := range p.lingering {
		all = append(all, u)
	}
	return all
}

// socketClosed forgets a lingering upstream once its last WebSocket ends.
func (p *Proxy) socketClosed(u *upstream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.lingering[u]; ok && u.socketCount() == 0 {
		delete(p.lingering, u)
	}
}

// WebSockets is the number of WebSockets being proxied.
func (p *Proxy) WebSockets() int64 { return p.websockets.Load() }

func (p *Proxy) newTransport(u discovery.Upstream, o TransportOptions, readTimeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	dial := d.DialContext
	if readTimeout > 0 {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &readTimeoutConn{Conn: c, timeout: readTimeout}, nil
		}
	}
	t := &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       o.IdleConnTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		TLSHandshakeTimeout:   o.DialTimeout,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	t.TLSClientConfig = upstreamTLS(u, o)
	// An empty, non-nil map keeps HTTP/1.1 to upstreams even for HTTPS.
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return t
}

// upstreamTLS is the TLS client configuration for an HTTPS upstream: the
// configured one or the system roots, HTTP/1.1 only, verifying the host of
// its address unless a server name is configured. Nil for plain HTTP.
func upstreamTLS(u discovery.Upstream, o TransportOptions) *tls.Config {
	if !u.TLS {
		return nil
	}
	var c *tls.Config
	if o.TLS != nil {
		c = o.TLS.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c.NextProtos = []string{"http/1.1"}
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(u.Addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}

// copyBuf is a buffer of the pool that response bodies and busy tunnels are
// copied with. The pool holds array pointers, so that giving a buffer back
// allocates nothing.
type copyBuf = [32 << 10]byte

type bufferPool struct{ p *Proxy }

func (b bufferPool) Get() []byte { return b.p.bufs.Get().(*copyBuf)[:] }

func (b bufferPool) Put(s []byte) {
	if len(s) == len(copyBuf{}) {
		b.p.bufs.Put((*copyBuf)(s))
	}
}

// requestState travels with a request through the reverse proxy. It is also
// the request's context (the incoming context plus the state), and it holds
// the response recorder, the forwarding header values and the body wrappers,
// so that all of them cost one allocation per request.
type requestState struct {
	context.Context // the incoming request's context

	opts  *Options
	start time.Time
	// What finish reports of the request, kept so that a tunnel can finish
	// it after the handler has returned.
	method, host, path, proto string
	// tunnel counts the parties of an upgraded request still running: the
	// handler and the tunnel (tunnel.go). Zero for every other request.
	tunnel atomic.Int32

	rec       responseRecorder
	clientIP  string
	chain     string
	stickyIn  string // sticky cookie value the client sent
	websocket bool
	tried     []*upstream
	upstream  *upstream      // the upstream that answered
	body      *retryableBody // the request body (&reqBody); nil without one, or once read whole into buffered
	triedBuf  [3]*upstream
	fwd       [5]string // X-Forwarded-* values; the outbound header points here
	requestID [1]string // Options.RequestIDHeader's value; "" without one
	reqBody   retryableBody
	buffered  bufferedBody // a small body read whole (ServeHTTP), in bufferedBuf
	// bufferedBuf holds buffered until the round trip ends (a response
	// streamed for long keeps no request body).
	bufferedBuf *[]byte
	respBody    countedBody
	// respBuf, when set, is where the upstream's response is built: the
	// fast path's connection reuses it for each of its requests.
	respBuf *responseBuf
}

type stateKey struct{}

// Value makes the state reachable from every context derived from it.
func (st *requestState) Value(key any) any {
	if key == (stateKey{}) {
		return st
	}
	return st.Context.Value(key)
}

func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// ServeHTTP proxies one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := p.newState(r.Context(), w, r)
	defer p.handlerDone(st)
	if msg := malformed(r); msg != "" {
		writeError(&st.rec, http.StatusBadRequest, msg)
		return
	}
	if r.Method == http.MethodConnect {
		// A tunnel to wherever the client names is a forward proxy's
		// job; sent to a node, the request makes no sense (NGINX refuses
		// it too).
		writeError(&st.rec, http.StatusNotImplemented, "CONNECT is not supported: flowgate is a reverse proxy\n")
		return
	}
	if r.Method == http.MethodTrace {
		// A node that answers TRACE echoes the request back, cookies and
		// all, to whatever script sent it (cross-site tracing). NGINX
		// answers 405 to every TRACE; so does flowgate.
		writeError(&st.rec, http.StatusMethodNotAllowed, "TRACE is not allowed\n")
		return
	}
	if !p.admit(st, r, parsePeer(r.RemoteAddr), r.Header["X-Forwarded-For"]) {
		return
	}
	if hasBody(r) {
		st.reqBody.ReadCloser = r.Body
		if d := st.opts.ClientBodyTimeout; d > 0 {
			st.reqBody.timeout = d
			st.reqBody.rc = http.NewResponseController(w)
			st.reqBody.stream = r.ProtoMajor == 2
		}
		st.body = &st.reqBody
		r.Body = st.body
		defer st.body.closed.Store(true)
		if n := r.ContentLength; n > 0 && n <= fastMaxBody {
			// A small body is read whole first, as on the fast path and
			// as NGINX buffers one: the request then goes upstream in one
			// write on the plain-HTTP transport, rather than through
			// http.Transport's goroutines, and can go to another upstream
			// if the first cannot be reached.
			st.bufferedBuf = getBodyBuf(n)
			defer st.releaseBuffered()
			if _, err := io.ReadFull(st.body, (*st.bufferedBuf)[:n]); err != nil {
				p.errorHandlerWith(&st.rec, r, st, &clientBodyError{err: err}, st.opts)
				return
			}
			st.buffered = bufferedBody{b: (*st.bufferedBuf)[:n]}
			st.body = nil
			r.Body = &st.buffered
		}
	}
	if d := st.opts.SendTimeout; d > 0 {
		st.rec.sendTimeout = d
		st.rec.stream = r.ProtoMajor == 2
	}
	// net/http's HTTP/1.1 server flushes the response under the write
	// deadline the last write set and clears it after; an HTTP/2 stream's
	// ends with the stream.
	p.rp.ServeHTTP(&st.rec, r.WithContext(st))
}

// malformed names what net/http's HTTP/2 server lets through and its
// HTTP/1.1 server answers 400: a Host (an :authority) that is no host, a
// method that is no token. Sent upstream, such a request fails every
// attempt in the transport, before a byte goes out, and each failure
// would count against an upstream: a few requests would eject them all.
func malformed(r *http.Request) string {
	switch {
	case !validHostHeader(r.Host):
		return "malformed Host header\n"
	case !validFieldName(r.Method): // a method is a token, as a field name is
		return "malformed method\n"
	}
	return ""
}

// hasBody reports whether r may carry a body. HTTP/2 gives every request
// a body reader, also one whose stream ended with its headers; such a
// request has a ContentLength of 0, as has one that declared an empty
// body, and httputil.ReverseProxy sends neither a body. Counting them as
// bodyless lets a browser's GET over HTTP/2 take the upstream transport
// for bodyless requests (h1transport.go) rather than http.Transport.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// newState starts a request: its state, answering through w, counted in
// flight until handlerDone.
func (p *Proxy) newState(ctx context.Context, w http.ResponseWriter, r *http.Request) *requestState {
	st := new(requestState)
	p.initState(st, ctx, w, r)
	return st
}

// initState is newState in st, which a connection reuses from request to
// request once nothing refers to the last request's state.
func (p *Proxy) initState(st *requestState, ctx context.Context, w http.ResponseWriter, r *http.Request) {
	o := p.options()
	*st = requestState{Context: ctx, opts: o, start: p.now(),
		method: r.Method, host: r.Host, path: r.URL.Path, proto: r.Proto}
	st.tried = st.triedBuf[:0]
	st.rec.ResponseWriter = w
	if m := o.Metrics; m != nil {
		m.inflight.Inc()
	}
}

// admit applies the request policies (rate limit, path policy, body size,
// WebSocket limit) and notes the client, from the TCP peer and the
// X-Forwarded-For values xff it sent, and its sticky cookie. It answers a
// refused request itself and reports false.
func (p *Proxy) admit(st *requestState, r *http.Request, peer tcpPeer, xff []string) bool {
	o := st.opts
	rec := &st.rec
	// The client address first: access logs and the rate limit need it for
	// requests refused below too.
	st.chain, st.clientIP = o.TrustedProxies.chainForPeer(peer, xff)
	if name := o.RequestIDHeader; name != "" {
		st.requestID[0] = requestIDFor(r.Header[name], o.TrustedProxies.trusts(peer))
		if st.respBuf == nil {
			// net/http's path: every answer carries it, the upstream's
			// (modifyResponse drops the upstream's own) and flowgate's.
			// The fast path writes it with each head.
			rec.Header()[name] = st.requestID[:1:1]
		}
	}
	if rh := o.ResponseHeaders; rh != nil && st.respBuf == nil {
		// The same for the response header rules.
		h := rec.Header()
		for _, f := range rh.set {
			h[f.name] = f.value
		}
	}
	if o.RateLimit != nil {
		if ok, wait := o.RateLimit.Allow(st.clientIP); !ok {
			rec.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			writeError(rec, http.StatusTooManyRequests, "too many requests; slow down\n")
			return false
		}
	}
	path := r.URL.EscapedPath()
	if o.Paths.Blocked(path) {
		writeError(rec, http.StatusForbidden, "forbidden by flowgate path policy\n")
		return false
	}
	if o.Paths.Restricted(path, st.clientIP) {
		writeError(rec, http.StatusForbidden, "forbidden from your network by flowgate path policy\n")
		return false
	}
	if o.MaxBodyBytes > 0 && hasBody(r) {
		if r.ContentLength > o.MaxBodyBytes {
			writeError(rec, http.StatusRequestEntityTooLarge, "request body too large\n")
			return false
		}
		if r.ContentLength < 0 {
			// A body of unknown length; one whose length was given ends
			// there (net/http's servers hold a body to its length).
			r.Body = http.MaxBytesReader(rec, r.Body, o.MaxBodyBytes)
		}
	}
	st.websocket = filterUpgrade(r.Header)
	if st.websocket && o.MaxWebSockets > 0 && p.websockets.Load() >= int64(o.MaxWebSockets) {
		p.errorHandlerWith(rec, r, st, errWebSocketLimit, o)
		return false
	}
	if o.StickyCookie != "" {
		if c, err := r.Cookie(o.StickyCookie); err == nil {
			st.stickyIn = c.Value
		}
	}
	return true
}

// handlerDone finishes the request when the handler returns, unless a
// tunnel still runs: then the last of the two finishes it.
func (p *Proxy) handlerDone(st *requestState) {
	if st.tunnel.Load() != 0 && st.tunnel.Add(-1) != 0 {
		return
	}
	p.finish(st)
}

// finish records a request in the metrics and the access log and ends its
// in-flight count.
func (p *Proxy) finish(st *requestState) {
	o := st.opts
	if m := o.Metrics; m != nil {
		defer m.inflight.Dec()
	}
	d := p.now().Sub(st.start)
	code := st.rec.status
	switch {
	case code == 0 && st.websocket && st.upstream != nil:
		code = http.StatusSwitchingProtocols // hijacked: the proxy wrote the 101 itself
	case code == 0:
		code = 499 // the client went away before any response
	}
	name := ""
	if st.upstream != nil {
		name = st.upstream.key
		st.upstream.metrics.observe(st.method, code, d)
	} else if o.Metrics != nil {
		o.Metrics.requests.WithLabelValues("", strconv.Itoa(code), methodLabel(st.method)).Inc()
	}
	if o.AccessLog != nil {
		attrs := [...]slog.Attr{
			slog.String("client", st.clientIP),
			slog.String("method", st.method),
			slog.String("host", st.host),
			slog.String("path", st.path),
			slog.String("proto", st.proto),
			slog.Int("status", code),
			slog.Int64("bytes", st.rec.bytes),
			slog.Duration("duration", d),
			slog.String("upstream", name),
			slog.String("request_id", st.requestID[0]),
		}
		n := len(attrs)
		if st.requestID[0] == "" {
			n-- // no request IDs
		}
		o.AccessLog.LogAttrs(st.Context, slog.LevelInfo, "request", attrs[:n]...)
	}
}

// rewrite builds the outbound request. httputil.ReverseProxy has already
// removed hop-by-hop headers and every client-sent X-Forwarded-* and
// Forwarded header.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	o := p.options()
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = "upstream.invalid" // set per attempt by the round tripper
	// The query goes upstream as the client sent it, as on the fast path
	// and as NGINX sends it. ReverseProxy drops the parameters it cannot
	// parse (a ";", a bad escape), lest a proxy that reads them and the
	// upstream disagree; flowgate decides nothing by the query, and a
	// browser's request over HTTP/2 lost them where curl's over HTTP/1.1
	// kept them.
	out.URL.RawQuery = pr.In.URL.RawQuery
	out.Host = pr.In.Host
	st.setForwarded(out.Header, pr.In.Host, o)
}

// setForwarded sets the forwarding headers of an outbound request.
func (st *requestState) setForwarded(h http.Header, host string, o *Options) {
	// One-element slices into st.fwd: no allocation per header. The cap
	// keeps an append by anyone else from writing into the next value.
	st.fwd = [5]string{st.chain, st.clientIP, "https", host, o.ForwardedPort}
	h["X-Forwarded-For"] = st.fwd[0:1:1]
	h["X-Real-Ip"] = st.fwd[1:2:2]
	h["X-Forwarded-Proto"] = st.fwd[2:3:3]
	h["X-Forwarded-Host"] = st.fwd[3:4:4]
	h["X-Forwarded-Port"] = st.fwd[4:5:5]
	if name := o.RequestIDHeader; name != "" {
		h[name] = st.requestID[:1:1]
	}
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	st.setStickyCookie(resp.Header)
	if name := st.opts.RequestIDHeader; name != "" {
		delete(resp.Header, name) // the client gets flowgate's (admit)
	}
	if rh := st.opts.ResponseHeaders; rh != nil {
		for name := range rh.names {
			delete(resp.Header, name) // replaced (admit) or removed
		}
	}
	if _, ok := resp.Header["Content-Type"]; !ok {
		// net/http's server would sniff the body and add a Content-Type
		// the upstream never sent (text/html, say, for a body a browser
		// told "nosniff" would not render); the key with no value stops
		// it, and the response goes out without one, as the fast path
		// and NGINX send it.
		st.rec.Header()["Content-Type"] = nil
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return p.startTunnel(st, resp)
	}
	st.opts.Compression.apply(resp.Request, resp, st.opts.Metrics)
	return nil
}

// setStickyCookie pins the client to the upstream that answered, unless
// the cookie it sent already does.
func (st *requestState) setStickyCookie(h http.Header) {
	name := st.opts.StickyCookie
	if name == "" || st.upstream == nil || st.stickyIn == st.upstream.cookie {
		return
	}
	c := &http.Cookie{Name: name, Value: st.upstream.cookie, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode}
	h.Add("Set-Cookie", c.String())
}

// roundTripper picks an upstream per attempt and retries what is safe.
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return rt.roundTrip(stateFrom(req.Context()), req)
}

// releaseBuffered gives back the buffer of a body read whole, once nothing
// will send it again.
func (st *requestState) releaseBuffered() {
	if st.bufferedBuf != nil {
		putBodyBuf(st.bufferedBuf)
		st.bufferedBuf, st.buffered = nil, bufferedBody{}
	}
}

// roundTrip is RoundTrip for the request whose state is st.
func (rt roundTripper) roundTrip(st *requestState, req *http.Request) (*http.Response, error) {
	defer st.releaseBuffered()
	p := rt.p
	o := p.options()
	set := p.set.Load()
	var lastErr error
	connectFailures := 0
	for attempt := 0; attempt < o.MaxAttempts; attempt++ {
		// The first attempt starts with the request; a retry reads the
		// clock, and so does a request whose body was read first, which
		// may have taken long.
		now := st.start
		if attempt > 0 || req.Body != nil && req.Body != http.NoBody {
			now = p.now()
		}
		u := set.pick(&pickOptions{balance: o.Balance, clientIP: st.clientIP, cookie: st.stickyIn, tried: st.tried, now: now, slowStart: o.SlowStart})
		if u == nil {
			break
		}
		if attempt > 0 && o.Metrics != nil {
			o.Metrics.retries.Inc()
		}
		st.tried = append(st.tried, u)
		if u.up.TLS {
			req.URL.Scheme = "https"
		} else {
			req.URL.Scheme = "http"
		}
		req.URL.Host = u.up.Addr
		u.inflight.Add(1)
		u.requests.Add(1)
		switch {
		case st.body != nil && req.Body != nil:
			// httputil.ReverseProxy hands us the body in a wrapper that
			// refuses reads once a failed attempt has closed it; every
			// attempt gets the body itself, whose Close does nothing.
			req.Body = st.body
		case st.buffered.b != nil && req.Body != nil:
			// The same for a body read whole, which the plain-HTTP
			// transport then recognizes.
			req.Body = &st.buffered
		}
		var resp *http.Response
		var err error
		switch {
		case st.websocket && u.wsTransport != nil:
			resp, err = u.wsTransport.RoundTrip(req)
		case u.h1 != nil && st.body == nil && canCarry(req):
			resp, err = u.h1.roundTrip(req, st.respBuf, now)
		default:
			if b, ok := req.Body.(*bufferedBody); ok {
				req.Body = b.detach()
			}
			resp, err = u.transport.RoundTrip(req)
		}
		if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
			if bodyErr := st.body.clientError(); bodyErr != nil {
				// The upstream answered a body that broke off in the
				// client's framing or went over the limit: it saw a
				// truncated request, and the client gets 400 or 413,
				// not that answer.
				resp.Body.Close()
				u.inflight.Add(-1)
				st.upstream = u
				return nil, &clientBodyError{err: bodyErr}
			}
		}
		if err == nil {
			u.succeed()
			st.upstream = u
			p.wrapBody(resp, u, o, st)
			return resp, nil
		}
		u.inflight.Add(-1)
		lastErr = err
		if isConnectError(err) {
			connectFailures++
		}
		if bodyErr := st.body.clientError(); bodyErr != nil {
			// The client's body was malformed, too large or too slow: the
			// client's fault, so no retry and no mark against the
			// upstream. (A body read that timed out also cancels an
			// HTTP/1.1 request's context.)
			st.upstream = u
			return nil, &clientBodyError{err: bodyErr}
		}
		if req.Context().Err() != nil {
			return nil, err // the client went away; not the upstream's fault
		}
		// The failure's own time: the attempt may have taken as long as a
		// timeout, longer than the fail timeout itself.
		if u.fail(p.now(), o.MaxFails, o.FailTimeout) {
			o.Logger.Warn("upstream ejected by passive health", "upstream", u.key, "for", o.FailTimeout, "err", err)
			if o.Metrics != nil {
				o.Metrics.ejections.WithLabelValues(u.key).Inc()
			}
		}
		if !retryable(req, st.body, err, o.RetryIdempotent) {
			st.upstream = u
			return nil, err
		}
		o.Logger.Debug("retrying on another upstream", "upstream", u.key, "err", err)
	}
	if lastErr == nil {
		return nil, ErrNoUpstream
	}
	if connectFailures == len(st.tried) {
		// No upstream could even be reached: that is unavailability, not a
		// bad gateway.
		return nil, fmt.Errorf("%w: %w", ErrNoUpstream, lastErr)
	}
	return nil, lastErr
}

// isConnectError reports whether err happened while connecting, before any
// byte of the request was sent.
func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// wrapBody keeps the upstream's in-flight count until the response body is
// done, and tracks upgraded connections. The body wrapper lives in st: one
// response per request.
func (p *Proxy) wrapBody(resp *http.Response, u *upstream, o *Options, st *requestState) {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			u.inflight.Add(-1)
			return
		}
		p.websockets.Add(1)
		if o.Metrics != nil {
			o.Metrics.websockets.Inc()
		}
		tc := &trackedConn{ReadWriteCloser: rwc, bufs: &p.bufs}
		tc.onClose = func() {
			u.untrackConn(tc)
			p.socketClosed(u)
			u.inflight.Add(-1)
			p.websockets.Add(-1)
			if o.Metrics != nil {
				o.Metrics.websockets.Dec()
			}
		}
		u.trackConn(tc)
		resp.Body = tc
		return
	}
	st.respBody.ReadCloser, st.respBody.u = resp.Body, u
	resp.Body = &st.respBody
}

type countedBody struct {
	io.ReadCloser
	u    *upstream
	done atomic.Bool
}

func (b *countedBody) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.u.inflight.Add(-1)
	}
	return b.ReadCloser.Close()
}

// retryableBody remembers whether any of the request body was consumed, so
// that a request whose body is untouched can go to another upstream. Close
// is left to the server, which owns the body; once the handler has returned,
// a transport goroutine that outlived it can no longer read.
//
// With a timeout, each read must bring data within it. Over HTTP/1.1 the
// connection's read deadline is renewed before each read, lazily
// (keptDeadline), and cleared once the body ends or fails, so that it
// bounds nothing after the body. An HTTP/2 stream's read deadline is a
// timer that ends the body when it fires, read pending or not: it is set
// before each read and cleared after, so that the time the upstream takes
// to accept what was read is not held against the client.
type retryableBody struct {
	io.ReadCloser
	read   atomic.Bool
	closed atomic.Bool
	failed atomic.Pointer[error] // the first read error other than EOF

	// Touched only by the one goroutine that reads the body at a time.
	timeout  time.Duration            // ClientBodyTimeout; 0 for none
	rc       *http.ResponseController // sets the read deadline when timeout is set
	stream   bool                     // the body is an HTTP/2 stream's
	deadline keptDeadline
}

var errBodyAfterHandler = errors.New("request body read after the handler returned")

// bodyTimeoutError is a client that sent nothing of its body for the
// timeout.
type bodyTimeoutError struct {
	timeout time.Duration
	err     error
}

func (e *bodyTimeoutError) Error() string {
	return fmt.Sprintf("client sent no part of its body for %v (http.client_body_timeout)", e.timeout)
}
func (e *bodyTimeoutError) Unwrap() error { return e.err }

func (b *retryableBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyAfterHandler
	}
	b.read.Store(true)
	if b.timeout > 0 {
		if t, renew := b.deadline.renew(b.timeout); renew || b.stream {
			b.rc.SetReadDeadline(t)
		}
	}
	n, err := b.ReadCloser.Read(p)
	if b.timeout > 0 && (err != nil || b.stream) {
		b.rc.SetReadDeadline(time.Time{})
		b.deadline.set(time.Time{})
	}
	if err != nil {
		if b.timeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			err = &bodyTimeoutError{timeout: b.timeout, err: err}
		}
		if err != io.EOF {
			b.failed.CompareAndSwap(nil, &err)
		}
	}
	return n, err
}

// clientError is the error reading the client's body failed with (a
// malformed chunk, a body over max_body_bytes, a client that vanished), or
// nil. A nil body has none.
func (b *retryableBody) clientError() error {
	if b == nil {
		return nil
	}
	if e := b.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// clientBodyError is a failed attempt whose cause was the client's body.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

func (b *retryableBody) Close() error { return nil }

// retryable reports whether a failed attempt may be repeated on another
// upstream: always when the connection could not be made or its TLS
// handshake failed (nothing was sent),
// and for idempotent requests without a body when retryIdempotent is set.
func retryable(req *http.Request, body *retryableBody, err error, retryIdempotent bool) bool {
	if body != nil && body.read.Load() {
		return false
	}
	if isConnectError(err) || errors.As(err, new(*handshakeError)) {
		return true
	}
	if !retryIdempotent {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return req.Header.Get("Upgrade") == ""
	}
	return false
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if err == errTunnelStarted {
		return // modifyResponse took the connection over; nothing to answer
	}
	p.errorHandlerWith(w, r, stateFrom(r.Context()), err, p.options())
}

// errorHandlerWith answers a failed request, whose state is st (nil if
// unknown). The client learns the class of failure, never an internal
// address or a Go error text.
func (p *Proxy) errorHandlerWith(w http.ResponseWriter, r *http.Request, st *requestState, err error, o *Options) {
	var cbe *clientBodyError
	if errors.As(err, &cbe) && errors.As(err, new(*bodyTimeoutError)) {
		// Before the check for a gone client: net/http's HTTP/1.1 server
		// cancels the request's context when a read times out, but the
		// client is there, and NGINX answers it too. An HTTP/1.1
		// connection closes after the answer (its server would otherwise
		// wait to read the rest of the body); an HTTP/2 stream ends alone,
		// where Connection: close would take down the whole connection
		// and every stream on it.
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		writeError(w, http.StatusRequestTimeout, "request body timed out\n")
		o.Logger.Info("client stopped sending its request body", "path", r.URL.Path, "err", cbe.err)
		return
	}
	if r.Context().Err() != nil {
		return // the client is gone; nobody to answer
	}
	upstreamName := ""
	if st != nil && st.upstream != nil {
		upstreamName = st.upstream.key
	}
	var ne net.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large\n")
	case errors.As(err, &cbe):
		writeError(w, http.StatusBadRequest, "malformed request body\n")
		o.Logger.Debug("client sent a malformed body", "path", r.URL.Path, "err", err)
	case errors.Is(err, ErrNoUpstream):
		wait := p.set.Load().retryAfter(p.now())
		if wait <= 0 {
			wait = o.NoUpstreamRetryAfter
		}
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		writeErrorPage(w, r, o.ErrorPages, http.StatusServiceUnavailable, "no upstream available; try again shortly\n")
		o.Logger.Warn("no healthy upstream", "path", r.URL.Path)
	case errors.Is(err, errWebSocketLimit):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too many websocket connections; try again shortly\n")
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		writeErrorPage(w, r, o.ErrorPages, http.StatusGatewayTimeout, "upstream timed out\n")
		o.Logger.Warn("upstream timed out", "upstream", upstreamName, "path", r.URL.Path, "err", err)
	default:
		writeErrorPage(w, r, o.ErrorPages, http.StatusBadGateway, "upstream failed to answer\n")
		o.Logger.Warn("upstream error", "upstream", upstreamName, "path", r.URL.Path, "err", err)
	}
}

func writeError(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// responseRecorder records the status and size of a response. Unwrap lets
// http.ResponseController reach Flush and Hijack underneath.
type responseRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64

	// sendTimeout (Options.SendTimeout) bounds each write and flush once
	// sendDeadlineAfter bytes went out: before that a write fits in what
	// the socket and an HTTP/2 stream's first window take, so the deadline,
	// which costs an HTTP/2 stream a message to its connection's loop,
	// is left unset for the common small response. Over HTTP/1.1 it is the
	// connection's write deadline, renewed lazily; net/http's server clears
	// it after the response. An HTTP/2 stream's is a timer that resets the
	// stream when it fires, write pending or not: it is set before each
	// write or flush and cleared after, so that a stream that waits for its
	// upstream (server-sent events, a slow node) is not cut for that.
	sendTimeout time.Duration
	stream      bool // HTTP/2
	rc          *http.ResponseController
	deadline    keptDeadline
}

// armSend sets the write deadline for a write or flush about to start;
// false when it need not (no timeout, a small response so far).
func (r *responseRecorder) armSend() bool {
	if r.sendTimeout <= 0 || r.bytes < sendDeadlineAfter {
		return false
	}
	if r.rc == nil {
		r.rc = http.NewResponseController(r.ResponseWriter)
	}
	if t, renew := r.deadline.renew(r.sendTimeout); renew || r.stream {
		r.rc.SetWriteDeadline(t)
	}
	return true
}

// disarmSend clears an HTTP/2 stream's write deadline after a write or
// flush that armSend armed.
func (r *responseRecorder) disarmSend(armed bool) {
	if armed && r.stream {
		r.rc.SetWriteDeadline(time.Time{})
		r.deadline.set(time.Time{})
	}
}

// sendDeadlineAfter is how much of a response goes out before its writes
// get a deadline (responseRecorder.sendTimeout).
const sendDeadlineAfter = 16 << 10

func (r *responseRecorder) WriteHeader(code int) {
	if r.status == 0 || r.status < 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *responseRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	armed := r.armSend()
	n, err := r.ResponseWriter.Write(b)
	r.disarmSend(armed)
	r.bytes += int64(n)
	return n, err
}

func (r *responseRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush supports streaming responses (server-sent events, long polling).
func (r *responseRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		armed := r.armSend()
		f.Flush()
		r.disarmSend(armed)
	}
}

// UpstreamStatus describes one upstream for /status.
type UpstreamStatus struct {
	Addr    string `json:"addr"`
	TLS     bool   `json:"tls,omitempty"`
	Weight  int    `json:"weight"`
	Service string `json:"service,omitempty"`
	ID      string `json:"id,omitempty"`
	State   string `json:"state"` // up, ejected (passive health), unhealthy (active health) or draining
	// Health is the active health checks' verdict, passing or failing
	// (with LastCheckError); empty without checks.
	Health         string `json:"health,omitempty"`
	LastCheckError string `json:"last_check_error,omitempty"`
	// SlowStartShare is the part of its requests an upstream in slow
	// start takes now, below 1; 0 (left out) once it takes all of them.
	SlowStartShare float64 `json:"slow_start_share,omitempty"`
	InFlight       int64   `json:"in_flight"`
	Requests       uint64  `json:"requests"`
	Failures       uint64  `json:"failures"`
}

// Status lists the upstreams in the set, then those still draining.
func (p *Proxy) Status() []UpstreamStatus {
	now := p.now()
	set := p.set.Load()
	out := make([]UpstreamStatus, 0, len(set.list))
	o := p.options()
	checks := o.HealthCheck.Path != ""
	describe := func(u *upstream, w int, state string) UpstreamStatus {
		s := UpstreamStatus{
			Addr: u.up.Addr, TLS: u.up.TLS, Weight: w, Service: u.up.Service, ID: u.up.ID, State: state,
			InFlight: u.inflight.Load(), Requests: u.requests.Load(), Failures: u.failures.Load(),
		}
		if f := u.share(now, o.SlowStart); f < 1 && state == "up" && o.Balance != IPHash {
			s.SlowStartShare = math.Round(f*100) / 100
		}
		if checks {
			s.Health = "passing"
			u.mu.Lock()
			if u.check.failing {
				s.Health, s.LastCheckError = "failing", u.check.last
			}
			u.mu.Unlock()
		}
		return s
	}
	for i, u := range set.list {
		out = append(out, describe(u, set.weights[i], u.state(now)))
	}
	p.mu.Lock()
	for u := range p.draining {
		out = append(out, describe(u, 0, "draining"))
	}
	p.mu.Unlock()
	return out
}

// Available is the number of upstreams in the set that passive health lets
// take requests.
func (p *Proxy) Available() int {
	now := p.now()
	n := 0
	for _, u := range p.set.Load().list {
		if u.available(now) {
			n++
		}
	}
	return n
}

// Size is the number of upstreams in the set.
func (p *Proxy) Size() int { return len(p.set.Load().list) }
