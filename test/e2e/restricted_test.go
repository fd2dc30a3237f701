package e2e

import (
	"strings"
	"testing"

	"github.com/flowgate/flowgate/test/harness"
)

// TestRestrictedPathWithCurl: http.restricted_paths lets curl on loopback
// reach /headers/admin when loopback is allowed, and refuses it with 403,
// the node untouched, when only 10.0.0.0/8 is; other paths pass either
// way.
func TestRestrictedPathWithCurl(t *testing.T) {
	t.Parallel()
	n := harness.StartStub(t, "n1")
	for _, tt := range []struct {
		allow string
		want  string
	}{
		{`["127.0.0.1", "::1"]`, "200"},
		{"[10.0.0.0/8]", "403"},
	} {
		fg := harness.StartFlowgate(t, harness.Options{
			Upstreams: []string{n.Addr},
			Config:    "http:\n  restricted_paths:\n    - path: /headers/admin\n      allow_from: " + tt.allow + "\n",
		})
		ca := caFile(t, fg)
		for _, proto := range []string{"--http1.1", "--http2"} {
			got := curl(t, "--cacert", ca, proto, "-o", "/dev/null", "-w", "%{http_code}", fg.URL("/headers/ADMIN/users"))
			if got != tt.want {
				t.Errorf("allow_from %s, %s: /headers/ADMIN/users got %s; want %s", tt.allow, proto, got, tt.want)
			}
			if got := curl(t, "--cacert", ca, proto, "-o", "/dev/null", "-w", "%{http_code}", fg.URL("/headers/other")); got != "200" {
				t.Errorf("allow_from %s, %s: /headers/other got %s; want 200", tt.allow, proto, got)
			}
		}
		if tt.want == "403" {
			body := curl(t, "--cacert", ca, fg.URL("/headers/admin"))
			if !strings.Contains(body, "forbidden from your network") {
				t.Errorf("the 403's body: got %q; want it to say why", body)
			}
		}
	}
}
