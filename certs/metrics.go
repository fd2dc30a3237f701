package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by every certificate source.
const (
	// MetricNotAfter is a gauge per served certificate: its NotAfter as a
	// Unix timestamp, labelled by name and serial.
	MetricNotAfter = "flowgate_certificate_not_after_timestamp_seconds"
	// MetricReloads counts reload attempts that changed something, labelled
	// by name and result ("success" or "failure").
	MetricReloads = "flowgate_certificate_reloads_total"
	// MetricLastReloadSuccess is the Unix timestamp of the last successful
	// load, labelled by name.
	MetricLastReloadSuccess = "flowgate_certificate_last_reload_success_timestamp_seconds"
)

// Reload results used as the "result" label of MetricReloads.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// Metrics records certificate metrics for one or more providers. A nil
// *Metrics is valid and records nothing, so a provider built without a
// registry can call its methods unconditionally.
//
// Several providers may share one registry: NewMetrics reuses collectors that
// are already registered under the same names. Each provider must use
// distinct certificate names (a file path, "issuer").
type Metrics struct {
	notAfter    *prometheus.GaugeVec
	reloads     *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec

	mu sync.Mutex // serialises the delete-then-set of notAfter per update
}

// NewMetrics registers the certificate metrics with reg. A nil reg returns a
// nil *Metrics (which records nothing) and no error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, nil
	}
	notAfter := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricNotAfter,
		Help: "NotAfter of each served certificate as a Unix timestamp.",
	}, []string{"name", "serial"})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricReloads,
		Help: "Certificate loads that changed something, by result.",
	}, []string{"name", "result"})
	lastSuccess := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricLastReloadSuccess,
		Help: "Unix timestamp of the last successful certificate load.",
	}, []string{"name"})

	var err error
	m := &Metrics{}
	if m.notAfter, err = register(reg, notAfter); err != nil {
		return nil, err
	}
	if m.reloads, err = register(reg, reloads); err != nil {
		return nil, err
	}
	if m.lastSuccess, err = register(reg, lastSuccess); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector of the same kind that is
// already registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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
	return zero, fmt.Errorf("registering certificate metrics: %w", err)
}

// Served records that leaf is now the certificate served under name: it sets
// the NotAfter gauge for its serial and deletes the series of any serial that
// name served before. It also makes both reload result series exist (at 0)
// so alerts on failures work before the first failure.
func (m *Metrics) Served(name string, leaf *x509.Certificate) {
	if m == nil || leaf == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notAfter.DeletePartialMatch(prometheus.Labels{"name": name})
	m.notAfter.WithLabelValues(name, SerialHex(leaf)).Set(float64(leaf.NotAfter.Unix()))
	m.reloads.WithLabelValues(name, ResultSuccess)
	m.reloads.WithLabelValues(name, ResultFailure)
}

// ReloadSucceeded counts a successful load of name at time at.
func (m *Metrics) ReloadSucceeded(name string, at time.Time) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(name, ResultSuccess).Inc()
	m.lastSuccess.WithLabelValues(name).Set(float64(at.Unix()))
}

// ReloadFailed counts a failed load of name.
func (m *Metrics) ReloadFailed(name string) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(name, ResultFailure).Inc()
}

// Forget deletes every series of name, for a certificate no longer served.
func (m *Metrics) Forget(name string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notAfter.DeletePartialMatch(prometheus.Labels{"name": name})
	m.reloads.DeletePartialMatch(prometheus.Labels{"name": name})
	m.lastSuccess.DeleteLabelValues(name)
}
