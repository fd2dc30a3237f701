package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestAdmin checks the admin listener: metrics after real traffic,
// readiness, and the status document.
func TestAdmin(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{a.Addr, b.Addr}})
	for range 10 {
		if resp, body := fg.Get("/headers"); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /headers: got %d; want 200\n%s", resp.StatusCode, body)
		}
	}
	if resp, _ := fg.Get("/actuator/env"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET /actuator/env: got %d; want 403", resp.StatusCode)
	}

	t.Run("metrics", func(t *testing.T) {
		if got := fg.Metric(t, "flowgate_requests_total", `code="200"`); got != 10 {
			t.Errorf(`flowgate_requests_total{code="200"}: got %v; want 10`, got)
		}
		if got := fg.Metric(t, "flowgate_tls_handshakes_total", `resumed="false"`); got < 1 {
			t.Errorf(`flowgate_tls_handshakes_total{resumed="false"}: got %v; want at least 1`, got)
		}
		if got := fg.Metric(t, "flowgate_requests_total", `code="403"`); got != 1 {
			t.Errorf(`flowgate_requests_total{code="403"}: got %v; want 1`, got)
		}
		_, body := fg.AdminGet("/metrics")
		for _, name := range []string{
			"flowgate_build_info",
			"flowgate_request_duration_seconds_bucket",
			"flowgate_requests_in_flight",
			"flowgate_websockets_active",
			"flowgate_upstream_up",
			"flowgate_certificate_not_after_timestamp_seconds",
			"flowgate_tls_handshake_errors_total",
			"go_goroutines",
			"process_open_fds",
		} {
			if !strings.Contains(body, "\n"+name) {
				t.Errorf("/metrics has no %s", name)
			}
		}
		if got := fg.Metric(t, "flowgate_upstream_up"); got != 2 {
			t.Errorf("flowgate_upstream_up summed over both nodes: got %v; want 2", got)
		}
	})

	t.Run("readyz and healthz", func(t *testing.T) {
		if code, body := fg.AdminGet("/readyz"); code != http.StatusOK || strings.TrimSpace(body) != "ready" {
			t.Errorf("/readyz: got %d %q; want 200 ready", code, body)
		}
		if code, _ := fg.AdminGet("/healthz"); code != http.StatusOK {
			t.Errorf("/healthz: got %d; want 200", code)
		}
		res := harness.RunFlowgate(t, nil, "health", "--admin-addr", fg.Admin)
		if res.Code != 0 {
			t.Errorf("flowgate health: got exit %d; want 0\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
	})

	t.Run("status", func(t *testing.T) {
		st := fg.Status()
		if !st.Ready || len(st.NotReady) != 0 {
			t.Errorf("ready: got %v %q; want true", st.Ready, st.NotReady)
		}
		var addrs []string
		var requests uint64
		for _, u := range st.Upstreams {
			addrs = append(addrs, u.Addr)
			requests += u.Requests
			if u.State != "up" {
				t.Errorf("upstream %s: state %q; want up", u.Addr, u.State)
			}
		}
		slices.Sort(addrs)
		want := []string{a.Addr, b.Addr}
		slices.Sort(want)
		if !slices.Equal(addrs, want) {
			t.Errorf("upstreams: got %v; want %v", addrs, want)
		}
		if requests != 10 {
			t.Errorf("upstream requests summed: got %d; want 10", requests)
		}
		if len(st.Certificates) == 0 {
			t.Fatalf("certificates: got none; want the issued one")
		}
		c := st.Certificates[0]
		if !slices.Contains(c.IPAddresses, "127.0.0.1") || !c.NotAfter.After(time.Now()) || c.Serial == "" {
			t.Errorf("certificate: got %+v; want a valid one for 127.0.0.1 with a serial", c)
		}
	})

	t.Run("CA certificate", func(t *testing.T) {
		code, body := fg.AdminGet("/.well-known/flowgate/ca.crt")
		if code != http.StatusOK || !strings.HasPrefix(body, "-----BEGIN CERTIFICATE-----") || strings.Contains(body, "PRIVATE KEY") {
			t.Errorf("admin CA: got %d\n%s; want 200 and one certificate, no key", code, body)
		}
		resp, err := http.Get("http://" + fg.HTTP + "/.well-known/flowgate/ca.crt")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("CA on the HTTP listener: got %d; want 200", resp.StatusCode)
		}
	})
}
