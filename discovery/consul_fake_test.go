package discovery

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeConsul answers /v1/health/service/<name> the way Consul does for the
// watch's unit tests: blocking queries on one index for all services. The
// integration tests use the real agent.
type fakeConsul struct {
	mu      sync.Mutex
	index   uint64
	entries map[string][]*api.ServiceEntry
	down    map[string]bool // services whose queries fail ("" = all)
	changed chan struct{}   // closed and replaced on every change
	queries []fakeQuery
}

// fakeQuery is one query the fake received.
type fakeQuery struct {
	service string
	index   uint64
	token   string
	at      time.Time
}

func newFakeConsul() *fakeConsul {
	return &fakeConsul{
		index:   1,
		entries: make(map[string][]*api.ServiceEntry),
		down:    make(map[string]bool),
		changed: make(chan struct{}),
	}
}

// set replaces a service's entries and sets the index (which may go
// backwards), waking blocked queries.
func (f *fakeConsul) set(index uint64, service string, entries ...*api.ServiceEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = index
	f.entries[service] = entries
	close(f.changed)
	f.changed = make(chan struct{})
}

// setDown makes the queries for service ("" for all) fail or succeed again.
func (f *fakeConsul) setDown(service string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[service] = down
	close(f.changed)
	f.changed = make(chan struct{})
}

// queryLog returns the queries received so far.
func (f *fakeConsul) queryLog() []fakeQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeQuery(nil), f.queries...)
}

func (f *fakeConsul) isDown(service string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down[""] || f.down[service]
}

// ServeHTTP implements the health endpoint: a query with the current index
// blocks until a change or the wait time.
func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	service, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	index, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	f.mu.Lock()
	f.queries = append(f.queries, fakeQuery{service: service, index: index, token: r.Header.Get("X-Consul-Token"), at: time.Now()})
	f.mu.Unlock()
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		if f.isDown(service) {
			http.Error(w, "fake consul is down", http.StatusInternalServerError)
			return
		}
		f.mu.Lock()
		cur, entries, changed := f.index, f.entries[service], f.changed
		f.mu.Unlock()
		if index == 0 || cur != index {
			writeEntries(w, cur, entries)
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			writeEntries(w, cur, entries)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func writeEntries(w http.ResponseWriter, index uint64, entries []*api.ServiceEntry) {
	if entries == nil {
		entries = []*api.ServiceEntry{}
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(index, 10))
	w.Header().Set("X-Consul-Knownleader", "true")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(entries)
}

// memTransport serves requests with a handler in memory, so that the watch
// runs inside a synctest bubble. A service marked down fails like a refused
// connection.
type memTransport struct{ f *fakeConsul }

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	service := strings.TrimPrefix(r.URL.Path, "/v1/health/service/")
	if m.f.isDown(service) {
		m.f.mu.Lock()
		m.f.queries = append(m.f.queries, fakeQuery{service: service, at: time.Now()})
		m.f.mu.Unlock()
		return nil, errors.New("dial tcp 127.0.0.1:8500: connect: connection refused")
	}
	rec := httptest.NewRecorder()
	m.f.ServeHTTP(rec, r)
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	return rec.Result(), nil
}

// gauge returns the value of the series of metric name with the given label
// values (in label order), and whether it exists.
func gauge(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
