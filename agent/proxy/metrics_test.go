package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowgate/flowgate/discovery"
)

func TestMetricsSeries(t *testing.T) {
	a := newBackend(t, "a", nil)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	paths, err := NewPathPolicy([]string{"/actuator"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProxy(t, Options{Metrics: m, Registerer: reg, Paths: paths}, a.upstream())
	url, c := front(t, p)
	key := a.upstream().Key()

	get(t, c, url+"/", nil)
	get(t, c, url+"/", nil)
	post(t, c, url+"/", "x")
	req, _ := http.NewRequest("PROPFIND", url+"/", nil)
	do(t, c, req)
	get(t, c, url+"/actuator/env", nil)

	want := `
# HELP flowgate_requests_total Requests proxied, by upstream, status code and method. Requests answered by flowgate itself have upstream="".
# TYPE flowgate_requests_total counter
flowgate_requests_total{code="200",method="GET",upstream="` + key + `"} 2
flowgate_requests_total{code="200",method="POST",upstream="` + key + `"} 1
flowgate_requests_total{code="200",method="OTHER",upstream="` + key + `"} 1
flowgate_requests_total{code="403",method="GET",upstream=""} 1
# HELP flowgate_requests_in_flight Requests being served right now.
# TYPE flowgate_requests_in_flight gauge
flowgate_requests_in_flight 0
# HELP flowgate_upstream_up 1 when the upstream takes requests, 0 while passive health ejects it or it fails its active health checks.
# TYPE flowgate_upstream_up gauge
flowgate_upstream_up{upstream="` + key + `"} 1
# HELP flowgate_upstream_in_flight Requests and WebSockets in flight to the upstream.
# TYPE flowgate_upstream_in_flight gauge
flowgate_upstream_in_flight{upstream="` + key + `"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"flowgate_requests_total", "flowgate_requests_in_flight", "flowgate_upstream_up", "flowgate_upstream_in_flight"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "flowgate_request_duration_seconds"); err != nil || n != 1 {
		t.Errorf("flowgate_request_duration_seconds series: got %d, %v; want 1 (one upstream)", n, err)
	}
	if got := histogramCount(t, reg, "flowgate_request_duration_seconds", key); got != 4 {
		t.Errorf("duration samples for %s: got %d; want 4", key, got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}

	// A node that has left and drained leaves no series behind.
	p.SetUpstreams([]discovery.Upstream{})
	eventually(t, "the removed node drains", func() bool { return len(p.Status()) == 0 })
	for _, name := range []string{"flowgate_upstream_up", "flowgate_upstream_in_flight", "flowgate_request_duration_seconds"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
			t.Errorf("%s series after the node left: got %d, %v; want 0", name, n, err)
		}
	}
	if got := testutil.CollectAndCount(m.requests); got != 1 {
		t.Errorf("flowgate_requests_total series after the node left: got %d; want 1 (upstream=\"\")", got)
	}
}

func histogramCount(t *testing.T, reg prometheus.Gatherer, name, upstream string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "upstream" && l.GetValue() == upstream {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestNilMetricsRecordNothing(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := newTestProxy(t, Options{}, a.upstream())
	url, c := front(t, p)
	if status, _, _ := get(t, c, url+"/", nil); status != http.StatusOK {
		t.Errorf("got %d; want 200 without metrics", status)
	}
}
