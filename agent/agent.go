package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flowgate/flowgate/agent/proxy"
	"github.com/flowgate/flowgate/certs"
)

// Options configure an Agent.
type Options struct {
	// Config is the validated configuration to run.
	Config Config
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the metrics; nil creates a fresh registry.
	Registry *prometheus.Registry
	// Version is reported in /status and flowgate_build_info.
	Version string
	// Revision is the VCS revision reported in flowgate_build_info.
	Revision string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Agent runs flowgate: the listeners, the proxy, and the certificate and
// upstream sources behind them. Create it with New, then call Run once.
type Agent struct {
	log          *slog.Logger
	reg          *prometheus.Registry
	version      string
	now          func() time.Time
	started      time.Time
	proxy        *proxy.Proxy
	metrics      *agentMetrics
	proxyMetrics *proxy.Metrics
	cfg          atomic.Pointer[Config]
	provider     atomic.Pointer[providerSlot]
	sources      atomic.Pointer[sourceSlot]
	redir        atomic.Pointer[redirector]
	limiter      atomic.Pointer[limiterSlot]
	ready        atomic.Bool

	mu     sync.Mutex // serialises Reload and the start and stop of sources
	runCtx context.Context
	wg     sync.WaitGroup
	addrs  Addrs
}

// Addrs are the addresses the listeners are bound to, known once Run has
// bound them.
type Addrs struct {
	HTTPS, HTTP, Admin string
}

// providerSlot is the current certificate provider and what stops it.
type providerSlot struct {
	p      certs.Provider
	key    string // the configuration it was built from
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds an agent from a configuration. It validates the configuration
// and loads the certificates (a missing or bad file fails here, naming the
// file), but binds and starts nothing.
func New(opts Options) (*Agent, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{
		log:     opts.Logger,
		reg:     opts.Registry,
		version: opts.Version,
		now:     opts.Now,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.reg == nil {
		a.reg = prometheus.NewRegistry()
		a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.metrics = newAgentMetrics(a.reg, opts.Version, opts.Revision)
	p, err := a.buildProvider(&cfg)
	if err != nil {
		return nil, err
	}
	a.provider.Store(&providerSlot{p: p, key: providerKey(&cfg)})
	a.proxyMetrics = proxy.NewMetrics(a.reg)
	popts, err := a.proxyOptions(&cfg)
	if err != nil {
		return nil, err
	}
	popts.Registerer = a.reg
	a.proxy = proxy.New(popts)
	sources, err := a.buildSources(&cfg)
	if err != nil {
		return nil, err
	}
	a.sources.Store(sources)
	a.cfg.Store(&cfg)
	a.redir.Store(newRedirector(&cfg, a.caPEM))
	return a, nil
}

// proxyOptions maps the configuration onto the proxy's options.
func (a *Agent) proxyOptions(cfg *Config) (proxy.Options, error) {
	balance, err := proxy.ParseBalance(cfg.Upstreams.Balance)
	if err != nil {
		return proxy.Options{}, err
	}
	trusted, err := proxy.ParseTrustedProxies(cfg.HTTP.TrustedProxies)
	if err != nil {
		return proxy.Options{}, err
	}
	paths, err := cfg.HTTP.pathPolicy()
	if err != nil {
		return proxy.Options{}, err
	}
	respHeaders, err := proxy.NewResponseHeaders(cfg.HTTP.ResponseHeaders)
	if err != nil {
		return proxy.Options{}, err
	}
	errorPages, err := proxy.LoadErrorPages(cfg.HTTP.ErrorPages)
	if err != nil {
		return proxy.Options{}, &FieldError{Key: "http.error_pages", Err: err}
	}
	compression, err := cfg.HTTP.compression()
	if err != nil {
		return proxy.Options{}, &FieldError{Key: "http.compression", Err: err}
	}
	upTLS, err := upstreamTLS(&cfg.Upstreams.TLS)
	if err != nil {
		return proxy.Options{}, err
	}
	o := proxy.Options{
		Balance:           balance,
		StickyCookie:      cfg.Upstreams.StickyCookie,
		TrustedProxies:    trusted,
		Paths:             paths,
		ForwardedPort:     fmt.Sprint(publicHTTPSPort(cfg)),
		MaxFails:          cfg.Upstreams.MaxFails,
		FailTimeout:       cfg.Upstreams.FailTimeout,
		RetryIdempotent:   cfg.Upstreams.RetryIdempotent,
		MaxAttempts:       cfg.Upstreams.MaxAttempts,
		DrainTimeout:      cfg.Upstreams.DrainTimeout,
		SlowStart:         cfg.Upstreams.SlowStart,
		MaxWebSockets:     cfg.HTTP.MaxWebSockets,
		MaxBodyBytes:      cfg.HTTP.MaxBodyBytes,
		ClientBodyTimeout: cfg.HTTP.ClientBodyTimeout,
		SendTimeout:       cfg.HTTP.SendTimeout,
		RequestIDHeader:   cfg.HTTP.RequestIDHeader,
		ResponseHeaders:   respHeaders,
		Compression:       compression,
		ErrorPages:        errorPages,
		HealthCheck: proxy.HealthCheck{
			Path:     cfg.Upstreams.HealthCheck.Path,
			Interval: cfg.Upstreams.HealthCheck.Interval,
			Timeout:  cfg.Upstreams.HealthCheck.Timeout,
			Fails:    cfg.Upstreams.HealthCheck.Fails,
			Passes:   cfg.Upstreams.HealthCheck.Passes,
		},
		Transport: proxy.TransportOptions{
			DialTimeout:           cfg.Upstreams.DialTimeout,
			ResponseHeaderTimeout: cfg.Upstreams.ResponseHeaderTimeout,
			ReadTimeout:           cfg.Upstreams.ReadTimeout,
			IdleConnTimeout:       cfg.Upstreams.IdleConnTimeout,
			MaxIdleConnsPerHost:   cfg.Upstreams.KeepAlive,
			TLS:                   upTLS,
		},
		Logger: a.log.With("component", "proxy"),
		Now:    a.now,
	}
	if cfg.Log.AccessLog {
		o.AccessLog = a.log.With("log", "access")
	}
	o.Metrics = a.proxyMetrics
	if o.RateLimit, err = a.rateLimiter(cfg.HTTP.RateLimit); err != nil {
		return proxy.Options{}, &FieldError{Key: "http.rate_limit", Err: err}
	}
	return o, nil
}

// rateLimiter returns the limiter for rc: the current one when the settings
// did not change, so that a reload keeps every client's state; nil when off.
func (a *Agent) rateLimiter(rc RateLimitConfig) (*proxy.RateLimiter, error) {
	if rc.RequestsPerSecond <= 0 {
		return nil, nil
	}
	if cur := a.limiter.Load(); cur != nil && cur.cfg == rc {
		return cur.l, nil
	}
	l, err := proxy.NewRateLimiter(proxy.RateLimiterOptions{Rate: rc.RequestsPerSecond, Burst: rc.Burst, MaxClients: rc.MaxClients, Now: a.now})
	if err != nil {
		return nil, err
	}
	a.limiter.Store(&limiterSlot{cfg: rc, l: l})
	return l, nil
}

type limiterSlot struct {
	cfg RateLimitConfig
	l   *proxy.RateLimiter
}

// upstreamTLS builds the TLS client configuration for HTTPS upstreams.
func upstreamTLS(c *UpstreamTLSConfig) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
	}
	if c.CAFile != "" {
		cas, err := certs.ReadPEMBundle(c.CAFile)
		if err != nil {
			return nil, &FieldError{Key: "upstreams.tls.ca_file", Err: err}
		}
		tc.RootCAs = x509.NewCertPool()
		for _, ca := range cas {
			tc.RootCAs.AddCert(ca)
		}
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, &FieldError{Key: "upstreams.tls.cert_file", Err: fmt.Errorf("loading client certificate %q/%q: %w", c.CertFile, c.KeyFile, err)}
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

func (a *Agent) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return a.provider.Load().p.GetCertificate(hello)
}

func (a *Agent) clientCAs() *x509.CertPool {
	if s, ok := a.provider.Load().p.(certs.ClientCASource); ok {
		return s.ClientCAs()
	}
	return nil
}

// caPEM returns the built-in CA certificate, or nil when the certificate
// does not come from the built-in CA.
func (a *Agent) caPEM() []byte {
	if s, ok := a.provider.Load().p.(interface{ CACertificatePEM() []byte }); ok {
		return s.CACertificatePEM()
	}
	return nil
}

// Addrs returns the bound listener addresses once Run has bound them.
func (a *Agent) Addrs() Addrs {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addrs
}

// Run binds the listeners, serves until ctx is cancelled, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish within
// http.shutdown_timeout, and then closes WebSockets. A listener that cannot
// be bound is an error naming its address.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg.Load()
	a.started = a.now()

	httpsLn, err := listen("listen.https", cfg.Listen.HTTPS, cfg.HTTP.MaxConnections)
	if err != nil {
		return err
	}
	var httpLn, adminLn net.Listener
	closeAll := func() {
		for _, l := range []net.Listener{httpsLn, httpLn, adminLn} {
			if l != nil {
				l.Close()
			}
		}
	}
	if cfg.Listen.HTTP != "" {
		if httpLn, err = listen("listen.http", cfg.Listen.HTTP, cfg.HTTP.MaxConnections); err != nil {
			closeAll()
			return err
		}
	}
	if cfg.Listen.Admin != "" {
		if adminLn, err = listen("listen.admin", cfg.Listen.Admin, 0); err != nil {
			closeAll()
			return err
		}
	}
	if len(cfg.Listen.ProxyProtocolFrom) > 0 {
		from, err := proxy.ParseTrustedProxies(cfg.Listen.ProxyProtocolFrom) // validated
		if err != nil {
			closeAll()
			return err
		}
		o := proxy.ProxyProtocolOptions{From: from, Timeout: cfg.HTTP.ReadHeaderTimeout, OnError: a.proxyProtocolError()}
		httpsLn = proxy.NewProxyProtocolListener(httpsLn, o)
		if httpLn != nil {
			httpLn = proxy.NewProxyProtocolListener(httpLn, o)
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.runCtx = runCtx
	a.addrs = Addrs{HTTPS: httpsLn.Addr().String()}
	if httpLn != nil {
		a.addrs.HTTP = httpLn.Addr().String()
	}
	if adminLn != nil {
		a.addrs.Admin = adminLn.Addr().String()
	}
	if c := *cfg; a.pinPublicPort(&c) {
		// Listening on port 0: redirects and X-Forwarded-Port must name the
		// port the kernel chose.
		popts, err := a.proxyOptions(&c)
		if err == nil {
			popts.Registerer = nil
			a.proxy.SetOptions(popts)
		}
		a.cfg.Store(&c)
		a.redir.Store(newRedirector(&c, a.caPEM))
		cfg = &c
	}
	a.startProviderLocked(a.provider.Load())
	a.startSourcesLocked()
	a.mu.Unlock()

	errLog := log.New(&serverErrorLog{log: a.log, handshakeErrors: a.metrics.handshakeErrors}, "", 0)
	var tlsLn net.Listener
	var fast *proxy.ConnServer
	if cfg.HTTP.FastPath {
		fast = a.proxy.NewConnServer(proxy.ConnOptions{
			Front:             a.front,
			ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
			IdleTimeout:       cfg.HTTP.IdleTimeout,
		})
		tlsLn = fast.Listen(httpsLn, a.serverTLSConfig(cfg), errLog)
	} else {
		tlsLn = tls.NewListener(httpsLn, a.serverTLSConfig(cfg))
	}
	httpsSrv := &http.Server{
		Handler:           a.httpsHandler(),
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    cfg.HTTP.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	servers := []*http.Server{httpsSrv}
	serveErr := make(chan error, 3)
	serve := func(name string, srv *http.Server, ln net.Listener) {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("%s listener: %w", name, err)
			}
		}()
	}
	serve("https", httpsSrv, tlsLn)
	if httpLn != nil {
		httpSrv := &http.Server{
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.redir.Load().ServeHTTP(w, r) }),
			ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
			IdleTimeout:       cfg.HTTP.IdleTimeout,
			MaxHeaderBytes:    cfg.HTTP.MaxHeaderBytes,
			ErrorLog:          errLog,
		}
		servers = append(servers, httpSrv)
		serve("http", httpSrv, httpLn)
	}
	var adminSrv *http.Server
	if adminLn != nil {
		adminSrv = &http.Server{
			Handler:           a.adminHandler(cfg),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          errLog,
		}
		serve("admin", adminSrv, adminLn)
	}
	a.ready.Store(true)
	deregister := a.startRegistration(runCtx, cfg)
	a.log.Info("flowgate serving", "https", a.addrs.HTTPS, "http", a.addrs.HTTP, "admin", a.addrs.Admin, "version", a.version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
		a.log.Error("listener failed; shutting down", "err", runErr)
	}

	// Graceful shutdown: readiness off and out of Consul first, so that
	// load balancers stop sending.
	a.ready.Store(false)
	deregister()
	timeout := a.cfg.Load().HTTP.ShutdownTimeout
	a.log.Info("shutting down", "timeout", timeout)
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer scancel()
	var swg sync.WaitGroup
	for _, srv := range servers {
		swg.Go(func() {
			if err := srv.Shutdown(sctx); err != nil {
				a.log.Warn("in-flight requests cut at shutdown timeout", "err", err)
				srv.Close()
			}
		})
	}
	if fast != nil {
		swg.Go(func() {
			if err := fast.Shutdown(sctx); err != nil {
				a.log.Warn("in-flight requests cut at shutdown timeout", "err", err)
			}
		})
	}
	swg.Wait()
	// WebSockets were hijacked, so Shutdown did not wait for them: close
	// them now, cleanly, with a short grace for the close handshake.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), min(timeout, 5*time.Second))
	a.proxy.Shutdown(wctx)
	wcancel()
	cancel() // stop certificate and upstream sources
	a.mu.Lock()
	a.stopSourcesLocked()
	a.stopProviderLocked()
	a.mu.Unlock()
	if adminSrv != nil {
		adminSrv.Close()
	}
	a.wg.Wait()
	a.log.Info("stopped")
	return runErr
}

// pinPublicPort sets listen.public_https_port to the bound HTTPS port when
// the configured port is 0 and no public port is set. a.mu is held.
func (a *Agent) pinPublicPort(cfg *Config) bool {
	if cfg.Listen.PublicHTTPSPort != 0 || a.addrs.HTTPS == "" {
		return false
	}
	if _, port, err := net.SplitHostPort(cfg.Listen.HTTPS); err != nil || (port != "0" && port != "") {
		return false
	}
	_, bound, err := net.SplitHostPort(a.addrs.HTTPS)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(bound)
	if err != nil {
		return false
	}
	cfg.Listen.PublicHTTPSPort = n
	return true
}

// httpsHandler is the handler behind the TLS listener.
func (a *Agent) httpsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hsts := a.redir.Load().hsts; hsts != nil {
			w.Header()["Strict-Transport-Security"] = hsts
		}
		if target, code, ok := a.redir.Load().misdirected(r.Host, r.URL.RequestURI()); !ok {
			a.answerMisdirected(w, r, target, code)
			return
		}
		a.proxy.ServeHTTP(w, r)
	})
}

// front is what the HTTPS handler does before the proxy, for the fast
// path: the Strict-Transport-Security values, and false for a host that
// is not served here, which the handler answers.
func (a *Agent) front(host, target string) ([]string, bool) {
	rd := a.redir.Load()
	if _, _, ok := rd.misdirected(host, target); !ok {
		return nil, false
	}
	return rd.hsts, true
}

// answerMisdirected answers an HTTPS request for a host that is not a
// server name: a redirect to the canonical name, or 421.
func (a *Agent) answerMisdirected(w http.ResponseWriter, r *http.Request, target string, code int) {
	if target != "" {
		code = http.StatusMovedPermanently
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			code = http.StatusPermanentRedirect
		}
		w.Header().Set("Location", target)
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	a.proxyMetrics.Answered(r.Method, code)
	w.WriteHeader(code)
	if target == "" {
		w.Write([]byte("this host is not served here\n"))
	}
}

// proxyProtocolError logs connections from a load balancer dropped for a
// missing or malformed PROXY protocol header: the first at once, then at
// most one line a minute with the count, since a balancer that was not set
// up to send it fails every connection.
func (a *Agent) proxyProtocolError() func(net.Addr, error) {
	var mu sync.Mutex
	var last time.Time
	var dropped int
	return func(peer net.Addr, err error) {
		mu.Lock()
		defer mu.Unlock()
		dropped++
		if now := a.now(); last.IsZero() || now.Sub(last) >= time.Minute {
			a.log.Warn("dropped a connection from a load balancer in listen.proxy_protocol_from: no valid PROXY protocol header",
				"peer", peer.String(), "err", err, "dropped_since_last_report", dropped)
			last, dropped = now, 0
		}
	}
}

// listen binds addr, naming the configuration key when it cannot.
func listen(key, addr string, maxConns int) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "permission denied") {
			hint = "; ports below 1024 need root or CAP_NET_BIND_SERVICE"
		} else if strings.Contains(err.Error(), "address already in use") {
			hint = "; another process holds it (ss -ltnp shows which)"
		}
		return nil, fmt.Errorf("%s: cannot listen on %q: %w%s", key, addr, err, hint)
	}
	if maxConns > 0 {
		ln = newLimitListener(ln, maxConns)
	}
	return ln, nil
}

// serverErrorLog routes net/http's internal error log to slog and counts
// TLS handshake failures.
type serverErrorLog struct {
	log             *slog.Logger
	handshakeErrors prometheus.Counter
}

func (l *serverErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		l.handshakeErrors.Inc()
		l.log.Debug(msg)
		return len(p), nil
	}
	l.log.Warn(msg)
	return len(p), nil
}
