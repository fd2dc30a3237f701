package certs

import (
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsNilRecordsNothing(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil || m != nil {
		t.Fatalf("NewMetrics(nil) = %v, %v; want nil, nil", m, err)
	}
	// Every method must be safe on nil.
	m.Served("a", &x509.Certificate{SerialNumber: big.NewInt(1)})
	m.ReloadSucceeded("a", time.Unix(1, 0))
	m.ReloadFailed("a")
	m.Forget("a")
}

func TestMetricsServedReplacesSerial(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second provider on the same registry shares the collectors.
	m2, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second NewMetrics on the same registry: %v", err)
	}

	m.Served("/tls/a.pem", &x509.Certificate{SerialNumber: big.NewInt(0xa1), NotAfter: time.Unix(1000, 0)})
	m.Served("/tls/a.pem", &x509.Certificate{SerialNumber: big.NewInt(0xa2), NotAfter: time.Unix(2000, 0)})
	m2.Served("issuer", &x509.Certificate{SerialNumber: big.NewInt(0xb1), NotAfter: time.Unix(3000, 0)})
	m.ReloadSucceeded("/tls/a.pem", time.Unix(1500, 0))
	m.ReloadFailed("/tls/a.pem")
	m.ReloadFailed("/tls/a.pem")

	want := `
# HELP flowgate_certificate_not_after_timestamp_seconds NotAfter of each served certificate as a Unix timestamp.
# TYPE flowgate_certificate_not_after_timestamp_seconds gauge
flowgate_certificate_not_after_timestamp_seconds{name="/tls/a.pem",serial="a2"} 2000
flowgate_certificate_not_after_timestamp_seconds{name="issuer",serial="b1"} 3000
# HELP flowgate_certificate_reloads_total Certificate loads that changed something, by result.
# TYPE flowgate_certificate_reloads_total counter
flowgate_certificate_reloads_total{name="/tls/a.pem",result="failure"} 2
flowgate_certificate_reloads_total{name="/tls/a.pem",result="success"} 1
flowgate_certificate_reloads_total{name="issuer",result="failure"} 0
flowgate_certificate_reloads_total{name="issuer",result="success"} 0
# HELP flowgate_certificate_last_reload_success_timestamp_seconds Unix timestamp of the last successful certificate load.
# TYPE flowgate_certificate_last_reload_success_timestamp_seconds gauge
flowgate_certificate_last_reload_success_timestamp_seconds{name="/tls/a.pem"} 1500
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	m.Forget("/tls/a.pem")
	if got := testutil.CollectAndCount(m.notAfter); got != 1 {
		t.Errorf("not_after series after Forget = %d; want 1 (issuer only)", got)
	}
}

func TestMetricsConflictingRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Something else already owns the name with another type.
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: MetricNotAfter, Help: "x"}))
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("NewMetrics with a conflicting collector: got nil error; want an error")
	}
}
