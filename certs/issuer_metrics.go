package certs

import (
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by the issuer, besides the shared certificate metrics
// (see Metrics) under the name "issuer".
const (
	// MetricIssuerCANotAfter is the NotAfter of the issuing CA as a Unix
	// timestamp. Only registered in CA mode.
	MetricIssuerCANotAfter = "flowgate_issuer_ca_not_after_timestamp_seconds"
	// MetricIssuerRotations counts rotation attempts by result ("success"
	// or "failure"); a failed save of a new leaf counts as a failure.
	MetricIssuerRotations = "flowgate_issuer_rotations_total"
	// MetricIssuerNextRotation is when the issuer next tries to rotate (or
	// retries after a failure), as a Unix timestamp.
	MetricIssuerNextRotation = "flowgate_issuer_next_rotation_timestamp_seconds"
)

// issuerName is the certificate name of the issuer in Info and metrics.
const issuerName = "issuer"

// issuerMetrics records the issuer's own metrics. A nil *issuerMetrics
// records nothing.
type issuerMetrics struct {
	shared       *Metrics
	caNotAfter   prometheus.Gauge // nil in self-signed mode
	rotations    *prometheus.CounterVec
	nextRotation prometheus.Gauge
}

// newIssuerMetrics registers the issuer metrics with reg; nil reg records
// nothing. Collectors already registered under the same names (by an
// earlier issuer on the same registry) are reused.
func newIssuerMetrics(reg prometheus.Registerer, withCA bool) (*issuerMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	shared, err := NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	m := &issuerMetrics{shared: shared}
	if withCA {
		if m.caNotAfter, err = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricIssuerCANotAfter,
			Help: "NotAfter of the CA that signs the issuer's certificates as a Unix timestamp.",
		})); err != nil {
			return nil, err
		}
	}
	if m.rotations, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricIssuerRotations,
		Help: "Certificate rotation attempts of the built-in issuer, by result.",
	}, []string{"result"})); err != nil {
		return nil, err
	}
	if m.nextRotation, err = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: MetricIssuerNextRotation,
		Help: "When the built-in issuer next rotates (or retries) its certificate, as a Unix timestamp.",
	})); err != nil {
		return nil, err
	}
	m.rotations.WithLabelValues(ResultSuccess)
	m.rotations.WithLabelValues(ResultFailure)
	return m, nil
}

// served records a newly served leaf, signed by ca (nil when self-signed),
// loaded or issued at.
func (m *issuerMetrics) served(leaf *x509.Certificate, ca *CA, at time.Time) {
	if m == nil {
		return
	}
	m.shared.Served(issuerName, leaf)
	m.shared.ReloadSucceeded(issuerName, at)
	if m.caNotAfter != nil && ca != nil {
		m.caNotAfter.Set(float64(ca.cert.NotAfter.Unix()))
	}
}

// rotated counts a rotation attempt. A failed attempt that still put a new
// certificate in service (only saving it failed) is not a failed load.
func (m *issuerMetrics) rotated(err error, served bool) {
	if m == nil {
		return
	}
	if err == nil {
		m.rotations.WithLabelValues(ResultSuccess).Inc()
		return
	}
	m.rotations.WithLabelValues(ResultFailure).Inc()
	if !served {
		m.shared.ReloadFailed(issuerName)
	}
}

// next records the time of the next rotation attempt.
func (m *issuerMetrics) next(at time.Time) {
	if m == nil {
		return
	}
	m.nextRotation.Set(float64(at.Unix()))
}
