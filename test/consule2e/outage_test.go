package consule2e

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestConsulAgentLossKeepsLastSet kills the Consul agent under load: the
// last-known set keeps serving without one failed request, the staleness
// metric rises and /status shows the errors. A new agent on the same address
// with the nodes registered again is picked up, and later changes on it are
// followed.
func TestConsulAgentLossKeepsLastSet(t *testing.T) {
	c := newCluster(t, "flowable-outage", "a", "b")
	c.register("a")
	c.register("b")
	c.startFlowgate("")
	c.waitUpstreams(10*time.Second, "a", "b")

	ld := startLoad(t, c.fg, 4, 40*time.Second)
	time.Sleep(300 * time.Millisecond)
	c.consul.Stop(t)
	killed := time.Now()

	var errs int
	if !poll(5*time.Second, func() bool {
		s := c.consulStatus().Consul.Services[0]
		errs = s.ConsecutiveErrors
		return s.ConsecutiveErrors > 0 && s.LastError != "" && s.LastErrorTime.After(killed.Add(-time.Second))
	}) {
		t.Fatalf("/status consul after the agent was killed: got %+v; want consecutive_errors > 0 and a last_error", c.consulStatus().Consul)
	}
	t.Logf("FIGURE: consul agent killed -> /status shows the error after %s", ms(time.Since(killed)))

	stale1 := c.staleness()
	time.Sleep(1500 * time.Millisecond)
	stale2 := c.staleness()
	t.Logf("FIGURE: flowgate_discovery_staleness_seconds during the outage: %.2f s, then %.2f s 1.5 s later", stale1, stale2)
	if stale2-stale1 < 1.2 {
		t.Errorf("staleness over 1.5 s without Consul: got %.2f -> %.2f; want a rise of about 1.5 s", stale1, stale2)
	}
	st := c.consulStatus()
	if s := st.Consul.Services[0]; s.ConsecutiveErrors < errs || s.LastError == "" {
		t.Errorf("/status consul during the outage: got consecutive_errors %d, last_error %q; want at least %d and an error", s.ConsecutiveErrors, s.LastError, errs)
	}
	if got, want := upstreams(st), c.addrs("a", "b"); !slices.Equal(got, want) {
		t.Errorf("upstream set without Consul: got %v; want the last-known %v", got, want)
	}
	if code, body := c.fg.AdminGet("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz without Consul: got %d %q; want 200 (the last-known set serves)", code, body)
	}
	samples := ld.Stop()
	nodes := count(samples, killed, time.Now())
	t.Logf("FIGURE: load while consul was down: %d requests (a=%d b=%d), %d failed",
		nodes["a"]+nodes["b"], nodes["a"], nodes["b"], len(samples)-len(okOnly(samples)))
	reportFailures(t, "load while the consul agent was down", samples)
	if nodes["a"] == 0 || nodes["b"] == 0 {
		t.Errorf("requests per node while consul was down: got %v; want both nodes", nodes)
	}

	// A new agent on the same address knows nothing until the nodes register
	// again, as after a real agent that lost its state.
	c.consul.Restart(t)
	c.register("a")
	restarted := c.register("b")
	c.waitUpstreams(40*time.Second, "a", "b") // at most one capped backoff
	svc := c.consulStatus().Consul.Services[0]
	if !poll(40*time.Second, func() bool {
		svc = c.consulStatus().Consul.Services[0]
		return svc.ConsecutiveErrors == 0 && svc.LastSuccess.After(restarted) && svc.Healthy == 2
	}) {
		t.Fatalf("/status consul after the new agent came up: got %+v; want no errors, an answer after the restart, 2 healthy", svc)
	}
	t.Logf("FIGURE: new consul agent with the nodes registered again -> flowgate converged after %s", ms(time.Since(restarted)))
	if stale := c.staleness(); stale >= stale2 {
		t.Errorf("staleness after Consul is back: got %.2f s; want below the outage's %.2f s", stale, stale2)
	}

	// The watch follows the new agent (its index started again from low).
	left := c.deregister("b")
	d := c.waitUpstreams(5*time.Second, "a")
	t.Logf("FIGURE: after the agent restart, a deregistration is followed in %s (seen in /status)", ms(time.Since(left)))
	if d > followLimit {
		t.Errorf("delay from deregistering b on the new agent to the set without it: got %v; want at most %v", d, followLimit)
	}
	if resp, body := c.fg.Get("/headers"); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Node") != "a" {
		t.Errorf("GET /headers after the recovery: got %d from %q; want 200 from a\n%s", resp.StatusCode, resp.Header.Get("X-Node"), body)
	}
}
