package discovery

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	consultest "github.com/flowgate/flowgate/test/consul"
)

// testLogger writes to the test's output (shown on failure or with -v).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitList reads updates until one has exactly the upstream addresses want
// (in Key order) and returns it; any update seen on the way must pass check
// (nil accepts all).
func waitList(t *testing.T, ups <-chan Update, check func(Update), want ...string) Update {
	t.Helper()
	timeout := time.After(15 * time.Second)
	var last []string
	for {
		select {
		case u := <-ups:
			if check != nil {
				check(u)
			}
			last = addrs(u.Upstreams)
			if slices.Equal(last, want) {
				return u
			}
		case <-timeout:
			t.Fatalf("upstreams: got %v; want %v within 15s", last, want)
			return Update{}
		}
	}
}

func flowable(id, addr string, port int) consultest.Service {
	return consultest.Service{ID: id, Name: "flowable", Address: addr, Port: port}
}

// TestConsulAgent runs the watch against a real Consul agent through
// registrations, check changes, maintenance, an outage and a restart.
func TestConsulAgent(t *testing.T) {
	agent := consultest.Start(t)
	reg := prometheus.NewRegistry()
	opts := ConsulOptions{Services: []string{"flowable"}, MaxBackoff: 500 * time.Millisecond, Registerer: reg, Logger: testLogger(t)}
	opts.Address = agent.Addr
	c, ups := runConsul(t, opts)

	waitList(t, ups, nil) // Consul answers: no instance yet
	if !c.Ready() {
		t.Fatal("Ready after the first answer: got false; want true")
	}

	agent.RegisterService(t, flowable("f1", "10.0.0.1", 8090))
	agent.RegisterService(t, flowable("f2", "10.0.0.2", 8090))
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090")

	agent.RegisterService(t, flowable("f3", "10.0.0.3", 8090))
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090", "10.0.0.3:8090")

	agent.SetCheck(t, "f3", "fail")
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090")
	agent.SetCheck(t, "f3", "pass")
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090", "10.0.0.3:8090")
	agent.DeregisterService(t, "f3")
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090")

	agent.SetCheck(t, "f2", "warn") // how operators drain a node
	waitList(t, ups, nil, "10.0.0.1:8090")
	st := c.Status().Services[0]
	if st.Passing != 1 || st.Warning != 1 || st.Healthy != 1 || st.Total != 2 {
		t.Errorf("status with one warning: got %+v; want 1 passing, 1 warning, 1 healthy of 2", st)
	}
	if v, _ := gauge(t, reg, MetricUpstreams, map[string]string{"service": "flowable", "state": "warning"}); v != 1 {
		t.Errorf("%s{state=warning}: got %v; want 1", MetricUpstreams, v)
	}
	agent.SetCheck(t, "f2", "pass")
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090")

	agent.Maintenance(t, "f1", true)
	waitList(t, ups, nil, "10.0.0.2:8090")
	agent.Maintenance(t, "f1", false)
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090")

	// No service address: the node's (127.0.0.1); weights and secure meta.
	agent.RegisterService(t, consultest.Service{ID: "f4", Name: "flowable", Port: 8443,
		Meta: map[string]string{"secure": "true"}, Weights: &api.AgentWeights{Passing: 5, Warning: 1}})
	u := waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090", "127.0.0.1:8443")
	if f4 := u.Upstreams[2]; !f4.TLS || f4.Weight != 5 || f4.ID != "f4" || f4.Service != "flowable" {
		t.Errorf("upstream f4: got %+v; want TLS, weight 5, ID f4, service flowable", f4)
	}
	agent.DeregisterService(t, "f4")
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090")

	// Outage: no update at all, errors counted, staleness rising.
	labels := map[string]string{"service": "flowable"}
	agent.Stop(t)
	time.Sleep(1500 * time.Millisecond)
	stale1, _ := gauge(t, reg, MetricDiscoveryStaleness, labels)
	time.Sleep(1000 * time.Millisecond)
	select {
	case u := <-ups:
		t.Fatalf("update while Consul is down: got %v; want none (the last list stays)", addrs(u.Upstreams))
	default:
	}
	stale2, _ := gauge(t, reg, MetricDiscoveryStaleness, labels)
	if stale1 < 1 || stale2 < stale1+0.9 {
		t.Errorf("%s during the outage: got %v then %v one second later; want >= 1 and rising", MetricDiscoveryStaleness, stale1, stale2)
	}
	if n, _ := gauge(t, reg, MetricDiscoveryErrors, labels); n < 2 {
		t.Errorf("%s during the outage: got %v; want >= 2", MetricDiscoveryErrors, n)
	}
	if st := c.Status(); !st.Ready || st.Services[0].ConsecutiveErrors == 0 || st.Services[0].Healthy != 2 {
		t.Errorf("status during the outage: got %+v; want ready, errors, the 2 upstreams kept", st)
	}

	// A new agent (empty, lower index) and the nodes registering again.
	agent.Restart(t)
	agent.RegisterService(t, flowable("f1", "10.0.0.1", 8090))
	agent.RegisterService(t, flowable("f5", "10.0.0.5", 8090))
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.5:8090")
	if st := c.Status().Services[0]; st.ConsecutiveErrors != 0 || st.SecondsSinceSuccess > 5 {
		t.Errorf("status after the restart: got %+v; want no errors and a fresh success", st)
	}
}

// TestConsulLatency measures the time from a Consul change to the Update
// over 50 changes; the proxy must follow Consul within 100 ms.
func TestConsulLatency(t *testing.T) {
	agent := consultest.Start(t)
	agent.RegisterService(t, flowable("f1", "10.0.0.1", 8090))
	agent.RegisterService(t, flowable("f2", "10.0.0.2", 8090))
	opts := ConsulOptions{Services: []string{"flowable"}, Logger: testLogger(t)}
	opts.Address = agent.Addr
	_, ups := runConsul(t, opts)
	waitList(t, ups, nil, "10.0.0.1:8090", "10.0.0.2:8090")

	const changes = 50
	var delays []time.Duration
	for i := range changes {
		// Changes come one at a time, like real ones; bursts faster than
		// MinInterval are coalesced by design.
		time.Sleep(100 * time.Millisecond)
		status, want := "fail", []string{"10.0.0.1:8090"}
		if i%2 == 1 {
			status, want = "pass", []string{"10.0.0.1:8090", "10.0.0.2:8090"}
		}
		start := time.Now()
		agent.SetCheck(t, "f2", status)
		waitList(t, ups, nil, want...)
		delays = append(delays, time.Since(start))
	}
	slices.Sort(delays)
	p50, p99 := delays[changes/2], delays[changes*99/100]
	t.Logf("consul change to update over %d changes: p50 %v, p99 %v, max %v", changes, p50, p99, delays[changes-1])
	if p99 >= 100*time.Millisecond {
		t.Errorf("p99 delay from a Consul change to the update: got %v; want < 100ms", p99)
	}
}
