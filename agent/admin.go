package agent

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowgate/flowgate/agent/proxy"
	"github.com/flowgate/flowgate/certs"
	"github.com/flowgate/flowgate/discovery"
)

// adminHandler serves the admin listener: metrics, liveness, readiness,
// status, the CA certificate and, when enabled, pprof.
func (a *Agent) adminHandler(cfg *Config) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.serveReadyz)
	mux.HandleFunc("GET /status", a.serveStatus)
	mux.HandleFunc("GET "+CAPath, func(w http.ResponseWriter, r *http.Request) { serveCA(w, r, a.caPEM()) })
	if cfg.Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// readiness lists what keeps the agent from being ready; empty means ready.
func (a *Agent) readiness() []string {
	var why []string
	if !a.ready.Load() {
		why = append(why, "listeners not serving (starting or shutting down)")
	}
	now := a.now()
	valid := false
	for _, c := range a.provider.Load().p.Status() {
		if now.Before(c.NotAfter) {
			valid = true
		}
	}
	if !valid {
		why = append(why, "no certificate is valid: every loaded certificate has expired")
	}
	switch {
	case a.proxy.Size() == 0:
		why = append(why, "no upstream: the upstream set is empty")
	case a.proxy.Available() == 0:
		why = append(why, "no healthy upstream: every upstream is ejected by passive health")
	}
	return why
}

func (a *Agent) serveReadyz(w http.ResponseWriter, r *http.Request) {
	why := a.readiness()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if len(why) == 0 {
		w.Write([]byte("ready\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	for _, s := range why {
		w.Write([]byte("not ready: " + s + "\n"))
	}
}

// Status is the document /status serves.
type Status struct {
	Version      string                  `json:"version"`
	Started      time.Time               `json:"started"`
	Ready        bool                    `json:"ready"`
	NotReady     []string                `json:"not_ready,omitempty"`
	Upstreams    []proxy.UpstreamStatus  `json:"upstreams"`
	Certificates []certs.Info            `json:"certificates"`
	Consul       *discovery.ConsulStatus `json:"consul,omitempty"`
	WebSockets   int64                   `json:"websockets"`
}

// Status reports the agent's current state.
func (a *Agent) Status() Status {
	why := a.readiness()
	st := Status{
		Version:      a.version,
		Started:      a.started,
		Ready:        len(why) == 0,
		NotReady:     why,
		Upstreams:    a.proxy.Status(),
		Certificates: a.provider.Load().p.Status(),
		WebSockets:   a.proxy.WebSockets(),
	}
	if s := a.sources.Load(); s != nil && s.consul != nil {
		cs := s.consul.Status()
		st.Consul = &cs
	}
	return st
}

func (a *Agent) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(a.Status())
}
