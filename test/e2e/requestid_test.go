package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestRequestIDWithCurl: with http.request_id_header, curl's request over
// HTTP/1.1 and over HTTP/2 reaches the node with an ID, curl gets the same
// ID back, and the access log line carries it. An ID curl sends itself
// is replaced: curl is not a trusted proxy.
func TestRequestIDWithCurl(t *testing.T) {
	t.Parallel()
	n := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{n.Addr},
		Config:    "http:\n  request_id_header: X-Request-ID\nlog:\n  access_log: true\n",
	})
	ca := caFile(t, fg)
	idHeader := regexp.MustCompile(`(?im)^x-request-id: ([0-9a-f]{32})\r?$`)
	for _, proto := range []string{"--http1.1", "--http2"} {
		mark := fg.Mark()
		out := curl(t, "--cacert", ca, proto, "-H", "X-Request-ID: chosen-by-curl", "-D", "-", fg.URL("/headers"))
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		m := idHeader.FindStringSubmatch(head)
		if m == nil {
			t.Fatalf("%s: no 32-digit hex X-Request-ID in the response head:\n%s", proto, head)
		}
		id := m[1]
		if got := decodeHeaders(t, body).Headers["X-Request-Id"]; len(got) != 1 || got[0] != id {
			t.Errorf("%s: the node saw X-Request-Id %q; want [%s]", proto, got, id)
		}
		if _, err := fg.WaitLog(mark, "request_id="+id, 5*time.Second); err != nil {
			t.Errorf("%s: access log: %v", proto, err)
		}
	}
}
