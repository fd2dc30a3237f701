package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/test/harness"
)

// TestResponseHeadersWithCurl: http.response_headers sets X-Frame-Options
// on the node's responses and on flowgate's own 403, and removes the
// stub's X-Node, as curl sees them over HTTP/1.1 and HTTP/2.
func TestResponseHeadersWithCurl(t *testing.T) {
	t.Parallel()
	n := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{n.Addr},
		Config:    "http:\n  response_headers:\n    X-Frame-Options: SAMEORIGIN\n    X-Node: \"\"\n",
	})
	ca := caFile(t, fg)
	xfo := regexp.MustCompile(`(?im)^x-frame-options: SAMEORIGIN\r?$`)
	for _, proto := range []string{"--http1.1", "--http2"} {
		for _, path := range []string{"/headers", "/actuator/env"} {
			head := curl(t, "--cacert", ca, proto, "-o", "/dev/null", "-D", "-", fg.URL(path))
			if got := len(xfo.FindAllString(head, -1)); got != 1 {
				t.Errorf("%s %s: %d X-Frame-Options: SAMEORIGIN lines; want 1:\n%s", proto, path, got, head)
			}
			if strings.Contains(strings.ToLower(head), "x-node:") {
				t.Errorf("%s %s: the node's X-Node is still there:\n%s", proto, path, head)
			}
		}
	}
}
