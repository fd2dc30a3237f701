package consule2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNoPassingInstance covers a service whose every instance fails its
// check: by default flowgate answers 503 with Retry-After and is not ready;
// with consul.fail_open it keeps serving the last non-empty set.
func TestNoPassingInstance(t *testing.T) {
	t.Run("503 and not ready", func(t *testing.T) {
		c := newCluster(t, "flowable-empty", "a")
		c.register("a")
		fg := c.startFlowgate("")
		c.waitUpstreams(10*time.Second, "a")
		if code, body := fg.AdminGet("/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz with a passing node: got %d %q; want 200", code, body)
		}

		failed := c.setCheck("a", "fail")
		var resp *http.Response
		var body string
		if !poll(2*time.Second, func() bool {
			resp, body = fg.Get("/headers")
			return resp.StatusCode == http.StatusServiceUnavailable
		}) {
			t.Fatalf("GET /headers with no passing instance: got %d %q; want 503", resp.StatusCode, body)
		}
		t.Logf("FIGURE: last instance critical -> 503 after %s", ms(time.Since(failed)))
		ra := resp.Header.Get("Retry-After")
		if n, err := strconv.Atoi(ra); err != nil || n < 1 {
			t.Errorf("Retry-After of the 503: got %q; want a number of seconds, at least 1", ra)
		}
		if resp.Header.Get("X-Node") != "" || !strings.Contains(body, "no upstream") {
			t.Errorf("503 answer: got X-Node %q, body %q; want flowgate's own answer saying there is no upstream", resp.Header.Get("X-Node"), body)
		}
		code, rbody := fg.AdminGet("/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(rbody, "no upstream") {
			t.Errorf("/readyz with no passing instance: got %d %q; want 503 naming the empty upstream set", code, rbody)
		}
		t.Logf("FIGURE: no passing instance: GET -> %d Retry-After %s; /readyz -> %d %q", resp.StatusCode, ra, code, strings.TrimSpace(rbody))
		if st := c.consulStatus(); st.Ready || st.Consul.Services[0].Critical != 1 || st.Consul.Services[0].Healthy != 0 {
			t.Errorf("/status: got ready %v, consul %+v; want not ready, 1 critical, 0 healthy", st.Ready, st.Consul.Services[0])
		}

		c.setCheck("a", "pass")
		if !poll(2*time.Second, func() bool {
			resp, body = fg.Get("/headers")
			return resp.StatusCode == http.StatusOK
		}) {
			t.Fatalf("GET /headers after the node passes again: got %d %q; want 200", resp.StatusCode, body)
		}
		if code, body := fg.AdminGet("/readyz"); code != http.StatusOK {
			t.Errorf("/readyz after the node passes again: got %d %q; want 200", code, body)
		}
	})

	t.Run("fail open keeps the last set", func(t *testing.T) {
		c := newCluster(t, "flowable-failopen", "a", "b")
		c.register("a")
		c.register("b")
		fg := c.startFlowgate("consul:\n  fail_open: true\n")
		c.waitUpstreams(10*time.Second, "a", "b")

		c.setCheck("a", "fail") // a non-empty answer is still obeyed
		c.waitUpstreams(2*time.Second, "b")
		c.setCheck("b", "fail")
		waitFailOpen(t, c, 2)
		c.deregister("a")
		c.deregister("b") // no instance at all: still the last non-empty set
		waitFailOpen(t, c, 0)

		nodes := map[string]int{}
		for range 10 {
			resp, body := fg.Get("/headers")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /headers in fail-open: got %d %q; want 200", resp.StatusCode, body)
			}
			nodes[resp.Header.Get("X-Node")]++
		}
		t.Logf("FIGURE: fail_open, no passing instance: 10 requests answered by %v", nodes)
		if nodes["b"] != 10 {
			t.Errorf("requests per node in fail-open: got %v; want all 10 by b, the last non-empty set", nodes)
		}
		if code, body := fg.AdminGet("/readyz"); code != http.StatusOK {
			t.Errorf("/readyz in fail-open: got %d %q; want 200", code, body)
		}

		c.register("a") // a passing instance ends fail-open
		c.waitUpstreams(2*time.Second, "a")
		if s := c.consulStatus().Consul.Services[0]; s.FailOpen {
			t.Errorf("/status consul after a passes again: got fail_open true; want false")
		}
	})
}

// waitFailOpen waits until /status shows the service in fail-open with total
// instances reported by Consul, and checks that the set is still b.
func waitFailOpen(t *testing.T, c *cluster, total int) {
	t.Helper()
	var s any
	if !poll(2*time.Second, func() bool {
		sv := c.consulStatus().Consul.Services[0]
		s = sv
		return sv.FailOpen && sv.Healthy == 0 && sv.Total == total
	}) {
		t.Fatalf("/status consul: got %+v; want fail_open, 0 healthy, %d total", s, total)
	}
	c.waitUpstreams(time.Second, "b")
}
