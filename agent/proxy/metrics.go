package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	inflight   prometheus.Gauge
	websockets prometheus.Gauge
	retries    prometheus.Counter
	ejections  *prometheus.CounterVec
	checks     *prometheus.CounterVec

	compressed      prometheus.Counter
	compressionIn   prometheus.Counter
	compressionOut  prometheus.Counter
	compressionBusy prometheus.Counter
}

// NewMetrics creates the proxy metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowgate_requests_total",
			Help: "Requests proxied, by upstream, status code and method. Requests answered by flowgate itself have upstream=\"\".",
		}, []string{"upstream", "code", "method"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flowgate_request_duration_seconds",
			Help:    "Time from receiving a request to finishing its response, by upstream.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"upstream"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowgate_requests_in_flight",
			Help: "Requests being served right now.",
		}),
		websockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowgate_websockets_active",
			Help: "WebSocket connections being proxied right now.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowgate_upstream_retries_total",
			Help: "Requests sent to another upstream after an attempt failed.",
		}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowgate_upstream_ejections_total",
			Help: "Times passive health took an upstream out after max_fails failures.",
		}, []string{"upstream"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowgate_upstream_health_checks_total",
			Help: "Active health checks sent to an upstream, by result (pass or fail).",
		}, []string{"upstream", "result"}),
		compressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowgate_compressed_responses_total",
			Help: "Responses gzipped by flowgate (http.compression).",
		}),
		compressionIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowgate_compression_input_bytes_total",
			Help: "Bytes of the nodes' responses that flowgate gzipped.",
		}),
		compressionOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowgate_compression_output_bytes_total",
			Help: "Gzipped bytes those responses were sent as.",
		}),
		compressionBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowgate_compression_busy_total",
			Help: "Responses sent uncompressed because http.compression.max_concurrent others were being compressed.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.inflight, m.websockets, m.retries, m.ejections, m.checks,
			m.compressed, m.compressionIn, m.compressionOut, m.compressionBusy)
	}
	return m
}

// Answered counts a request that flowgate answered itself, without an
// upstream (a redirect, a 421).
func (m *Metrics) Answered(method string, code int) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues("", strconv.Itoa(code), methodLabel(method)).Inc()
}

// upstreamMetrics caches the per-upstream series so the hot path does no
// label hashing.
type upstreamMetrics struct {
	m        *Metrics
	name     string
	duration prometheus.Observer
	counters sync.Map // requestKey -> prometheus.Counter
}

type requestKey struct {
	code   int
	method string
}

func (m *Metrics) forUpstream(name string) *upstreamMetrics {
	if m == nil {
		return nil
	}
	return &upstreamMetrics{m: m, name: name, duration: m.duration.WithLabelValues(name)}
}

func (um *upstreamMetrics) observe(method string, code int, d time.Duration) {
	if um == nil {
		return
	}
	k := requestKey{code: code, method: methodLabel(method)}
	c, ok := um.counters.Load(k)
	if !ok {
		c, _ = um.counters.LoadOrStore(k, um.m.requests.WithLabelValues(um.name, strconv.Itoa(code), k.method))
	}
	c.(prometheus.Counter).Inc()
	um.duration.Observe(d.Seconds())
}

// forget removes the series of an upstream that left the set.
func (um *upstreamMetrics) forget() {
	if um == nil {
		return
	}
	um.m.requests.DeletePartialMatch(prometheus.Labels{"upstream": um.name})
	um.m.duration.DeleteLabelValues(um.name)
	um.m.ejections.DeleteLabelValues(um.name)
	um.m.checks.DeletePartialMatch(prometheus.Labels{"upstream": um.name})
}

// checked counts an active health check.
func (um *upstreamMetrics) checked(err error) {
	if um == nil {
		return
	}
	result := "pass"
	if err != nil {
		result = "fail"
	}
	um.m.checks.WithLabelValues(um.name, result).Inc()
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// upstreamCollector reports the state of the current upstream set at scrape
// time, so removed upstreams disappear on their own.
type upstreamCollector struct {
	p    *Proxy
	up   *prometheus.Desc
	infl *prometheus.Desc
}

func newUpstreamCollector(p *Proxy) *upstreamCollector {
	return &upstreamCollector{
		p:    p,
		up:   prometheus.NewDesc("flowgate_upstream_up", "1 when the upstream takes requests, 0 while passive health ejects it or it fails its active health checks.", []string{"upstream"}, nil),
		infl: prometheus.NewDesc("flowgate_upstream_in_flight", "Requests and WebSockets in flight to the upstream.", []string{"upstream"}, nil),
	}
}

func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.infl
}

func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.p.now()
	for _, u := range c.p.set.Load().list {
		v := 0.0
		if u.available(now) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, v, u.key)
		ch <- prometheus.MustNewConstMetric(c.infl, prometheus.GaugeValue, float64(u.inflight.Load()), u.key)
	}
}
