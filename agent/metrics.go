package agent

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// agentMetrics are the metrics the agent itself owns.
type agentMetrics struct {
	handshakeErrors prometheus.Counter
	handshakes      *prometheus.CounterVec
	reloads         *prometheus.CounterVec
}

func newAgentMetrics(reg prometheus.Registerer, version, revision string) *agentMetrics {
	m := &agentMetrics{
		handshakeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowgate_tls_handshake_errors_total",
			Help: "TLS handshakes on the HTTPS listener that failed.",
		}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowgate_tls_handshakes_total",
			Help: "Completed TLS handshakes on the HTTPS listener, by whether the session was resumed.",
		}, []string{"resumed"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowgate_config_reloads_total",
			Help: "Configuration reloads (SIGHUP), by result.",
		}, []string{"result"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "flowgate_build_info",
		Help:        "Always 1; the labels say which flowgate is running.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	build.Set(1)
	reg.MustRegister(m.handshakeErrors, m.handshakes, m.reloads, build)
	m.handshakes.WithLabelValues("true")
	m.handshakes.WithLabelValues("false")
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m
}
