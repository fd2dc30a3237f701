package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// setHealth turns a stub node's /actuator/health DOWN (503) or UP again.
func setHealth(t *testing.T, n *harness.Stub, state string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, n.URL()+"/stub/health", strings.NewReader(state))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("setting %s's health %s: got %d", n.Name, state, resp.StatusCode)
	}
}

// waitState waits until /status reports the node in state (up, unhealthy)
// and returns how long it took.
func waitState(t *testing.T, fg *harness.Flowgate, n *harness.Stub, state string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		for _, u := range fg.Status().Upstreams {
			if u.Addr == n.Addr && u.State == state {
				return time.Since(start)
			}
		}
		if time.Since(start) > within {
			t.Fatalf("node %s not %s within %v: /status %+v", n.Name, state, within, fg.Status().Upstreams)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHealthCheckFollowsActuatorHealth: with upstreams.health_check on
// Flowable's /actuator/health, a node whose health turns DOWN (503, as
// when its database is gone, while it still answers other requests) takes
// no requests after two failed checks, and takes them again after two
// passed ones. Its metric and /status say so.
func TestHealthCheckFollowsActuatorHealth(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{a.Addr, b.Addr},
		Config:    "upstreams:\n  health_check:\n    path: /actuator/health\n    interval: 200ms\n    timeout: 150ms\n",
	})
	mark := fg.Mark()
	setHealth(t, b, "DOWN")
	took := waitState(t, fg, b, "unhealthy", 5*time.Second)
	t.Logf("FIGURE: node taken out %s after its health turned DOWN (interval 200ms, fails 2)", took.Round(10*time.Millisecond))
	if _, err := fg.WaitLog(mark, "upstream failed its health checks", 5*time.Second); err != nil {
		t.Error(err)
	}
	if got := fg.MetricSamples(t, "flowgate_upstream_up", `upstream="http://`+b.Addr+`"`); len(got) != 1 || got[0] != 0 {
		t.Errorf("flowgate_upstream_up for the DOWN node: got %v; want [0]", got)
	}
	if got := fg.Metric(t, "flowgate_upstream_health_checks_total", `upstream="http://`+b.Addr+`"`, `result="fail"`); got < 2 {
		t.Errorf("flowgate_upstream_health_checks_total{result=\"fail\"} for the DOWN node: got %v; want at least 2", got)
	}
	const n = 200
	counts, failed := countNodes(load(fg.Client, fg.URL("/headers"), 4, n, nil))
	if len(failed) > 0 || counts["b"] != 0 || counts["a"] != n {
		t.Fatalf("requests with b DOWN: %v, %d failed; want all %d on a", counts, len(failed), n)
	}

	setHealth(t, b, "UP")
	took = waitState(t, fg, b, "up", 5*time.Second)
	t.Logf("FIGURE: node back %s after its health turned UP (passes 2)", took.Round(10*time.Millisecond))
	counts, failed = countNodes(load(fg.Client, fg.URL("/headers"), 4, n, nil))
	if len(failed) > 0 || counts["a"] == 0 || counts["b"] == 0 {
		t.Fatalf("requests with b UP again: %v, %d failed; want both nodes", counts, len(failed))
	}
}
