package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// scenario is one measured workload.
type scenario struct {
	id     string
	title  string
	unit   string // of the primary value
	higher bool   // a higher primary value is better
	// load runs the workload against addr for d. The primary value is the
	// rate unless value is set.
	load func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error)
	// minBytes, when above zero, is the least response size per request
	// (proves bodies arrive whole); maxBytes, when above zero, the most
	// (proves a proxy compressed them).
	minBytes, maxBytes int64
}

var scenarios = []*scenario{
	{
		id: "h1-keepalive-1k", title: "HTTPS/1.1 keep-alive, 1 KiB responses, 64 connections (wrk)",
		unit: "req/s", higher: true, minBytes: 1024,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			return runWrk(ctx, b.dir, wrkOptions{url: "https://" + p.addr() + "/bytes?n=1024", conns: 64, d: d})
		},
	},
	{
		id: "h1-post-1k", title: "HTTPS/1.1 keep-alive, 1 KiB JSON POSTs, 1 KiB responses, 64 connections (wrk)",
		unit: "req/s", higher: true, minBytes: 1024,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			return runWrk(ctx, b.dir, wrkOptions{url: "https://" + p.addr() + "/bytes?n=1024", conns: 64, d: d, postBytes: 1024})
		},
	},
	{
		id: "h1-100k-length", title: "HTTPS/1.1, 100 KiB responses with Content-Length, 64 connections (wrk)",
		unit: "req/s", higher: true, minBytes: 102400,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			return runWrk(ctx, b.dir, wrkOptions{url: "https://" + p.addr() + "/bytes?n=102400", conns: 64, d: d})
		},
	},
	{
		id: "h1-100k-chunked", title: "HTTPS/1.1, 100 KiB chunked responses without Content-Length, 64 connections (wrk)",
		unit: "req/s", higher: true, minBytes: 102400,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			return runWrk(ctx, b.dir, wrkOptions{url: "https://" + p.addr() + "/bytes?n=102400&chunked=1", conns: 64, d: d})
		},
	},
	{
		id: "h1-gzip-100k", title: "HTTPS/1.1, 100 KiB JSON gzipped by the proxy (level 5), 64 connections (wrk)",
		unit: "req/s", higher: true, minBytes: 4 << 10, maxBytes: 48 << 10,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			return runWrk(ctx, b.dir, wrkOptions{url: "https://" + p.addr() + "/json?n=102400", conns: 64, d: d,
				headers: []string{"Accept-Encoding: gzip"}})
		},
	},
	{
		id: "h2-1k", title: "HTTP/2, 1 KiB responses, 16 connections x 10 streams (h2load)",
		unit: "req/s", higher: true, minBytes: 1024,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			return runH2load(ctx, b.dir, "https://"+p.addr()+"/bytes?n=1024", 16, 10, d, 0)
		},
	},
	{
		id: "h2-post-1k", title: "HTTP/2, 1 KiB JSON POSTs, 1 KiB responses, 16 connections x 10 streams (h2load)",
		unit: "req/s", higher: true, minBytes: 1024,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			return runH2load(ctx, b.dir, "https://"+p.addr()+"/bytes?n=1024", 16, 10, d, 1024)
		},
	},
	{
		id: "tls-full", title: "New TLS connection per request, full ECDSA P-256 handshake, 16 Go clients",
		unit: "handshakes/s", higher: true,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			r := runTLSLoad(ctx, tlsLoadOptions{addr: p.addr(), path: "/tls/bytes?n=1024", workers: 16, d: d})
			if r.extra["client_resumed"] > 0 {
				return r, fmt.Errorf("%v of %d handshakes resumed; want full handshakes only", r.extra["client_resumed"], r.requests)
			}
			return r, nil
		},
	},
	{
		id: "tls-resume", title: "New TLS connection per request, session resumption, 16 connections (wrk)",
		unit: "handshakes/s", higher: true, minBytes: 1024,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			// wrk, unlike the Go client of tls-full, is cheap enough per
			// resumed handshake to keep the proxy core busy. Resumption is
			// counted by the server: flowgate in its handshake metric, the
			// others in an X-TLS-Resumed header on /tls/ (configs.go).
			before, okBefore := p.handshakeCounts(ctx)
			r, err := runWrk(ctx, b.dir, wrkOptions{url: "https://" + p.addr() + "/tls/bytes?n=1024",
				conns: 16, d: d, newConns: true, countResumed: true})
			if err != nil {
				return r, err
			}
			if after, ok := p.handshakeCounts(ctx); ok && okBefore {
				r.extra["server_reported"] = after.total - before.total
				r.extra["server_resumed"] = after.resumed - before.resumed
			}
			return r, checkResumed(r)
		},
	},
	{
		id: "ws-echo", title: "WebSocket over TLS, 1 KiB echo round trips, 64 connections",
		unit: "round trips/s", higher: true,
		load: func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
			return runWSEcho(ctx, p.addr(), 64, 1024, d)
		},
	},
	{
		id: "ws-idle", title: "Idle WebSockets: resident memory per proxied connection",
		unit: "KiB/conn", higher: false,
	},
	{
		id: "latency-1conn", title: "Latency added over the upstream direct, 1 connection, 1 KiB (wrk)",
		unit: "µs added (p50)", higher: false,
	},
}

// checkResumed fails a resumption run in which the server reported fewer
// handshakes than 90 % of the requests (it stopped reporting them) or
// resumed fewer than 90 % of those it reported.
func checkResumed(r loadResult) error {
	reported, resumed := r.extra["server_reported"], r.extra["server_resumed"]
	switch {
	case r.requests == 0:
		return nil
	case reported < 0.9*float64(r.requests):
		return fmt.Errorf("the server reported %v handshakes for %d requests; want one per request", reported, r.requests)
	case resumed < 0.9*reported:
		return fmt.Errorf("only %v of %v handshakes resumed; want at least 90%%", resumed, reported)
	}
	return nil
}

func scenarioByID(id string) *scenario {
	for _, s := range scenarios {
		if s.id == id {
			return s
		}
	}
	return nil
}

// result is one measured run of one peer in one scenario.
type result struct {
	Scenario    string             `json:"scenario"`
	Peer        string             `json:"peer"`
	Run         int                `json:"run"`
	Time        time.Time          `json:"time"`
	Value       float64            `json:"value"` // the scenario's primary figure
	Rate        float64            `json:"rate,omitempty"`
	Requests    int64              `json:"requests,omitempty"`
	Errors      int64              `json:"errors,omitempty"`
	P50us       float64            `json:"p50_us,omitempty"`
	P99us       float64            `json:"p99_us,omitempty"`
	Seconds     float64            `json:"seconds,omitempty"`
	CPUSeconds  float64            `json:"cpu_seconds"`
	CPUPerReqUs float64            `json:"cpu_us_per_request,omitempty"`
	CoreUse     float64            `json:"core_use,omitempty"` // proxy CPU seconds / wall seconds
	PeakRSSKB   int64              `json:"peak_rss_kb"`
	RSSKB       int64              `json:"rss_kb"`
	Extra       map[string]float64 `json:"extra,omitempty"`
	Error       string             `json:"error,omitempty"`
}

// order returns the peers of run i, rotated so that every peer goes first
// in turn and no peer always follows the same one.
func order(peers []*peer, i int) []*peer {
	n := len(peers)
	out := make([]*peer, 0, n)
	step := 1
	if i%2 == 1 {
		step = n - 1 // odd runs walk backwards: the followers change too
	}
	for k := range n {
		out = append(out, peers[(i+k*step)%n])
	}
	return out
}

func (b *bench) selected() []*scenario {
	if len(b.cfg.only) == 0 {
		return scenarios
	}
	var out []*scenario
	for _, s := range scenarios {
		if slices.Contains(b.cfg.only, s.id) {
			out = append(out, s)
		}
	}
	return out
}

// runScenarios measures every selected scenario: a warm-up per peer, then
// the runs with the peers alternating.
func (b *bench) runScenarios(ctx context.Context) {
	for _, s := range b.selected() {
		if ctx.Err() != nil {
			return
		}
		b.logf("== %s: %s", s.id, s.title)
		switch s.id {
		case "ws-idle":
			b.runIdle(ctx, s)
			continue
		case "latency-1conn":
			b.runLatency(ctx, s)
			continue
		}
		for _, p := range b.peers {
			if err := p.running(); err != nil {
				continue
			}
			s.load(ctx, b, p, b.cfg.warmup)
		}
		for i := range b.cfg.runs {
			for _, p := range order(b.peers, i) {
				r := b.measure(ctx, s, p, i)
				b.record(r)
				b.logRun(s, r)
			}
		}
		if b.cfg.pprof {
			b.profile(ctx, s)
		}
	}
}

func (b *bench) logRun(s *scenario, r result) {
	if r.Error != "" {
		b.logf("   %-8s run %d: ERROR %s", r.Peer, r.Run+1, r.Error)
		return
	}
	b.logf("   %-8s run %d: %10.1f %-15s p50 %7.0fµs p99 %7.0fµs  cpu %5.1fµs/req  core %3.0f%%  peak %6.1f MiB",
		r.Peer, r.Run+1, r.Value, s.unit, r.P50us, r.P99us, r.CPUPerReqUs, 100*r.CoreUse, float64(r.PeakRSSKB)/1024)
}

// measure runs the scenario's load once against p and reads the proxy's
// CPU time and peak memory around it.
func (b *bench) measure(ctx context.Context, s *scenario, p *peer, run int) result {
	r := result{Scenario: s.id, Peer: p.name, Run: run, Time: time.Now()}
	if err := p.running(); err != nil {
		r.Error = err.Error()
		return r
	}
	resetPeak(p.pids)
	before, err := sample(p.pids)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	lr, err := s.load(ctx, b, p, b.cfg.duration)
	after, serr := sample(p.pids)
	if err == nil {
		err = serr
	}
	r.fill(lr, before, after)
	r.Value = r.Rate
	switch {
	case err != nil:
		r.Error = err.Error()
	case lr.requests == 0:
		r.Error = "no request completed"
	case lr.errors > 0:
		r.Error = fmt.Sprintf("%d errors: %s", lr.errors, lr.detail)
	case s.minBytes > 0 && lr.bytes > 0 && lr.bytes < s.minBytes*lr.requests:
		r.Error = fmt.Sprintf("%d bytes for %d requests; responses were cut short", lr.bytes, lr.requests)
	case s.maxBytes > 0 && lr.bytes > s.maxBytes*lr.requests:
		r.Error = fmt.Sprintf("%d bytes for %d requests; the proxy did not compress them", lr.bytes, lr.requests)
	}
	if s.maxBytes > 0 && lr.requests > 0 {
		if r.Extra == nil {
			r.Extra = map[string]float64{}
		}
		r.Extra["bytes_per_response"] = float64(lr.bytes) / float64(lr.requests)
	}
	return r
}

// fill copies a load result and the proxy's resource use into r.
func (r *result) fill(lr loadResult, before, after procSample) {
	r.Requests = lr.requests
	r.Errors = lr.errors
	r.Rate = lr.rate()
	r.Seconds = lr.elapsed.Seconds()
	r.P50us = float64(lr.p50.Microseconds())
	r.P99us = float64(lr.p99.Microseconds())
	r.CPUSeconds = float64(after.ticks-before.ticks) / float64(clockTicks)
	if lr.requests > 0 {
		r.CPUPerReqUs = r.CPUSeconds * 1e6 / float64(lr.requests)
	}
	if r.Seconds > 0 {
		r.CoreUse = r.CPUSeconds / r.Seconds
	}
	r.PeakRSSKB = after.hwmKB
	r.RSSKB = after.rssKB
	r.Extra = lr.extra
}

// runIdle measures resident memory per idle WebSocket on a freshly
// started peer: RSS before and after opening the sockets, divided by their
// number.
func (b *bench) runIdle(ctx context.Context, s *scenario) {
	n := b.cfg.idleConns
	for i := range b.cfg.runs {
		for _, p := range order(b.peers, i) {
			r := b.measureIdle(ctx, s, p, i, n, false)
			b.record(r)
			b.logf("   %-8s run %d: %6.1f KiB/conn (RSS %6.1f -> %6.1f MiB, %d sockets)%s", p.name, i+1, r.Value,
				r.Extra["rss_before_kb"]/1024, float64(r.RSSKB)/1024, n, errSuffix(r.Error))
		}
	}
	if b.cfg.pprof {
		for _, p := range b.peers {
			if p.name == "flowgate" {
				b.measureIdle(ctx, s, p, -1, n, true)
			}
		}
	}
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " ERROR " + e
}

func (b *bench) measureIdle(ctx context.Context, s *scenario, p *peer, run, n int, profile bool) result {
	r := result{Scenario: s.id, Peer: p.name, Run: run, Time: time.Now()}
	if err := p.restart(ctx); err != nil {
		r.Error = err.Error()
		return r
	}
	// Warm up: the first connections pay for one-time setup.
	warm, err := openWebSockets(ctx, p.addr(), 20, 4)
	if err != nil {
		r.Error = "warm-up: " + err.Error()
		return r
	}
	closeAll(warm)
	time.Sleep(500 * time.Millisecond)
	before, err := sample(p.pids)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	start := time.Now()
	ws, err := openWebSockets(ctx, p.addr(), n, 32)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer closeAll(ws)
	opened := time.Since(start)
	time.Sleep(2 * time.Second) // let the proxy settle
	after, err := sample(p.pids)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if profile {
		path := filepath.Join(b.cfg.out, "pprof", "flowgate-ws-idle.heap.pb.gz")
		if err := fetch(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", p.adminPort), path); err != nil {
			b.logf("   heap profile: %v", err)
		} else {
			b.logf("   heap profile with %d idle websockets: %s", n, path)
		}
		for _, f := range []struct{ url, file string }{
			{"/metrics", "flowgate-ws-idle.metrics.txt"},
			{"/debug/pprof/goroutine?debug=1", "flowgate-ws-idle.goroutines.txt"},
		} {
			path := filepath.Join(b.cfg.out, "pprof", f.file)
			if err := fetch(ctx, fmt.Sprintf("http://127.0.0.1:%d%s", p.adminPort, f.url), path); err != nil {
				b.logf("   %s: %v", f.url, err)
			}
		}
	}
	// Prove the sockets are still proxied end to end.
	for _, w := range []*wsConn{ws[0], ws[n/2], ws[n-1]} {
		if err := w.roundTrip([]byte("still there")); err != nil {
			r.Error = "idle websocket no longer echoes: " + err.Error()
			return r
		}
	}
	r.RSSKB = after.rssKB
	r.PeakRSSKB = after.hwmKB
	r.CPUSeconds = float64(after.ticks-before.ticks) / float64(clockTicks)
	r.Value = float64(after.rssKB-before.rssKB) / float64(n)
	r.Extra = map[string]float64{
		"rss_before_kb": float64(before.rssKB),
		"conns":         float64(n),
		"open_seconds":  opened.Seconds(),
	}
	return r
}

// runLatency measures wrk at one connection against an upstream directly
// and through each peer in the same run; the value is the difference.
func (b *bench) runLatency(ctx context.Context, s *scenario) {
	direct := "http://" + b.upstreams[0] + "/bytes?n=1024"
	for _, p := range b.peers {
		runWrk(ctx, b.dir, wrkOptions{url: "https://" + p.addr() + "/bytes?n=1024", conns: 1, d: b.cfg.warmup})
	}
	for i := range b.cfg.runs {
		base, err := runWrk(ctx, b.dir, wrkOptions{url: direct, conns: 1, d: b.cfg.duration})
		d := result{Scenario: s.id, Peer: "direct", Run: i, Time: time.Now()}
		d.fill(base, procSample{}, procSample{})
		d.CPUSeconds, d.CPUPerReqUs, d.CoreUse = 0, 0, 0
		if err != nil || base.errors > 0 {
			d.Error = fmt.Sprintf("direct: %v %s", err, base.detail)
		}
		b.record(d)
		b.logf("   %-8s run %d: p50 %7.0fµs p99 %7.0fµs", "direct", i+1, d.P50us, d.P99us)
		for _, p := range order(b.peers, i) {
			sc := *s
			sc.load = func(ctx context.Context, b *bench, p *peer, d time.Duration) (loadResult, error) {
				return runWrk(ctx, b.dir, wrkOptions{url: "https://" + p.addr() + "/bytes?n=1024", conns: 1, d: d})
			}
			r := b.measure(ctx, &sc, p, i)
			r.Extra = map[string]float64{
				"p50_added_us": r.P50us - d.P50us,
				"p99_added_us": r.P99us - d.P99us,
			}
			r.Value = r.P50us - d.P50us
			b.record(r)
			b.logf("   %-8s run %d: p50 %7.0fµs (+%.0f) p99 %7.0fµs (+%.0f)%s", p.name, i+1,
				r.P50us, r.Extra["p50_added_us"], r.P99us, r.Extra["p99_added_us"], errSuffix(r.Error))
		}
	}
}

// profile records a flowgate CPU profile while the scenario's load runs
// once more (not counted).
func (b *bench) profile(ctx context.Context, s *scenario) {
	for _, p := range b.peers {
		if p.name != "flowgate" || s.load == nil {
			continue
		}
		secs := wholeSeconds(b.cfg.duration)
		path := filepath.Join(b.cfg.out, "pprof", "flowgate-"+s.id+".cpu.pb.gz")
		done := make(chan error, 1)
		go func() {
			done <- fetch(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", p.adminPort, secs), path)
		}()
		s.load(ctx, b, p, time.Duration(secs)*time.Second)
		if err := <-done; err != nil {
			b.logf("   cpu profile: %v", err)
		} else {
			b.logf("   cpu profile: %s", path)
		}
	}
}

// meta describes the machine and the software measured.
func (b *bench) meta() map[string]any {
	m := map[string]any{
		"started":            b.started.UTC().Format(time.RFC3339),
		"finished":           time.Now().UTC().Format(time.RFC3339),
		"quick":              b.cfg.quick,
		"runs":               b.cfg.runs,
		"run_seconds":        b.cfg.duration.Seconds(),
		"idle_websockets":    b.cfg.idleConns,
		"proxy_core":         proxyCore,
		"load_core":          loadCore,
		"peers":              b.cfg.peers,
		"keepalive_per_host": keepAlivePerUpstream,
	}
	if len(b.cfg.flowgateEnv) > 0 {
		m["flowgate_env"] = b.cfg.flowgateEnv
	}
	for k, v := range versions(b.cfg.flowgate) {
		m[k] = v
	}
	m["loadavg_end"] = strings.TrimSpace(readFileString("/proc/loadavg"))
	return m
}
