package discovery

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by Consul discovery; every one has a "service" label.
const (
	// MetricDiscoveryUpdates counts the changes of a service's upstream list
	// (its first answer included).
	MetricDiscoveryUpdates = "flowgate_discovery_updates_total"
	// MetricDiscoveryErrors counts failed Consul queries.
	MetricDiscoveryErrors = "flowgate_discovery_errors_total"
	// MetricDiscoveryLastSuccess is the Unix time of the last answer from
	// Consul, changed or not.
	MetricDiscoveryLastSuccess = "flowgate_discovery_last_success_timestamp_seconds"
	// MetricDiscoveryStaleness is the number of seconds since the last answer
	// from Consul (since the watch started, before the first answer). With
	// blocking queries Consul answers at least every WaitTime (plus up to
	// 1/16 of it), so a healthy value stays below that; alert on more than
	// about twice the WaitTime.
	MetricDiscoveryStaleness = "flowgate_discovery_staleness_seconds"
	// MetricUpstreams is the number of instances Consul reports, by
	// aggregated check state ("passing", "warning", "critical"; maintenance
	// and unreachable nodes count as critical).
	MetricUpstreams = "flowgate_upstreams"
	// MetricDiscoveryInvalid is the number of instances of the last answer
	// that were skipped because they cannot be an upstream (no or bad
	// address, bad port, duplicate address).
	MetricDiscoveryInvalid = "flowgate_discovery_invalid_instances"
)

// consulMetrics holds the discovery collectors. They exist even without a
// registry, so the watch code never checks for nil.
type consulMetrics struct {
	updates     *prometheus.CounterVec
	errors      *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	upstreams   *prometheus.GaugeVec
	invalid     *prometheus.GaugeVec
	staleness   *stalenessCollector
}

// newConsulMetrics builds the collectors and registers them with reg (when
// not nil). Collectors already registered under the same names, by an
// earlier Consul on the same registry, are reused, so a configuration reload
// that builds a new Consul keeps the counters.
func newConsulMetrics(reg prometheus.Registerer) (*consulMetrics, error) {
	label := []string{"service"}
	m := &consulMetrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDiscoveryUpdates,
			Help: "Changes of the upstream list of a Consul service.",
		}, label),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDiscoveryErrors,
			Help: "Failed Consul queries for a service.",
		}, label),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricDiscoveryLastSuccess,
			Help: "Unix time of the last answer from Consul for a service.",
		}, label),
		upstreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricUpstreams,
			Help: "Instances of a Consul service by aggregated check state.",
		}, []string{"service", "state"}),
		invalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricDiscoveryInvalid,
			Help: "Instances of a Consul service skipped because they cannot be an upstream.",
		}, label),
		staleness: &stalenessCollector{
			desc: prometheus.NewDesc(MetricDiscoveryStaleness,
				"Seconds since the last answer from Consul for a service.", label, nil),
			owners: make(map[string]*Consul),
		},
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.updates, err = registerOrReuse(reg, m.updates); err != nil {
		return nil, err
	}
	if m.errors, err = registerOrReuse(reg, m.errors); err != nil {
		return nil, err
	}
	if m.lastSuccess, err = registerOrReuse(reg, m.lastSuccess); err != nil {
		return nil, err
	}
	if m.upstreams, err = registerOrReuse(reg, m.upstreams); err != nil {
		return nil, err
	}
	if m.invalid, err = registerOrReuse(reg, m.invalid); err != nil {
		return nil, err
	}
	if m.staleness, err = registerOrReuse(reg, m.staleness); err != nil {
		return nil, err
	}
	return m, nil
}

// registerOrReuse registers c, or returns the collector of the same type
// already registered under its names.
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	var zero C
	return zero, fmt.Errorf("registering consul discovery metrics: %w", err)
}

// init creates the series of service at zero, so that rate() and alerts work
// before the first error.
func (m *consulMetrics) init(service string) {
	m.updates.WithLabelValues(service)
	m.errors.WithLabelValues(service)
}

// answered records an answer that was applied.
func (m *consulMetrics) answered(service string, conv conversion, at time.Time, changed bool) {
	m.lastSuccess.WithLabelValues(service).Set(unixSeconds(at))
	m.upstreams.WithLabelValues(service, "passing").Set(float64(conv.counts.Passing))
	m.upstreams.WithLabelValues(service, "warning").Set(float64(conv.counts.Warning))
	m.upstreams.WithLabelValues(service, "critical").Set(float64(conv.counts.Critical))
	m.invalid.WithLabelValues(service).Set(float64(len(conv.errs)))
	if changed {
		m.updates.WithLabelValues(service).Inc()
	}
}

// attach makes c the source of the staleness of its services; the newest
// Consul wins, so a reload that builds a new one before stopping the old one
// reports the new one.
func (m *consulMetrics) attach(c *Consul) {
	m.staleness.mu.Lock()
	defer m.staleness.mu.Unlock()
	for _, w := range c.watches {
		m.staleness.owners[w.name] = c
	}
}

// detach stops reporting the staleness of c's services, unless another
// Consul took them over.
func (m *consulMetrics) detach(c *Consul) {
	m.staleness.mu.Lock()
	defer m.staleness.mu.Unlock()
	for _, w := range c.watches {
		if m.staleness.owners[w.name] == c {
			delete(m.staleness.owners, w.name)
		}
	}
}

// stalenessCollector computes MetricDiscoveryStaleness at scrape time.
type stalenessCollector struct {
	desc *prometheus.Desc

	mu     sync.Mutex
	owners map[string]*Consul // service name → the Consul that reports it
}

// Describe implements prometheus.Collector.
func (s *stalenessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

// Collect implements prometheus.Collector.
func (s *stalenessCollector) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	owners := make(map[string]*Consul, len(s.owners))
	for k, v := range s.owners {
		owners[k] = v
	}
	s.mu.Unlock()
	for service, c := range owners {
		if st, ok := c.serviceStatus(service); ok {
			ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, st.SecondsSinceSuccess, service)
		}
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
