package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/test/harness"
)

// TestCompressionWithCurl: with http.compression on, curl --compressed
// gets the node's JSON gzipped, over HTTP/1.1 and HTTP/2, with and without
// a length from the node, and decodes it to every byte; curl without it,
// and a PNG, get the node's bytes as they were.
func TestCompressionWithCurl(t *testing.T) {
	t.Parallel()
	n := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{n.Addr},
		Config:    "http:\n  compression:\n    enabled: true\n",
	})
	ca := caFile(t, fg)
	gzipLine := regexp.MustCompile(`(?im)^content-encoding: gzip\r?$`)
	varyLine := regexp.MustCompile(`(?im)^vary: accept-encoding\r?$`)
	const n200k = 200 << 10
	// -w prints the bytes that came over the wire and those written out,
	// after curl decoded them.
	measure := []string{"-o", "/dev/null", "-D", "-", "-w", "wire=%{size_download}\n"}
	for _, proto := range []string{"--http1.1", "--http2"} {
		for _, chunked := range []string{"0", "1"} {
			path := fmt.Sprintf("/bytes?n=%d&type=application/json&chunked=%s", n200k, chunked)
			out := curl(t, append([]string{"--cacert", ca, proto, "--compressed"}, append(measure, fg.URL(path))...)...)
			if !gzipLine.MatchString(out) || !varyLine.MatchString(out) {
				t.Errorf("%s chunked=%s: want Content-Encoding: gzip and Vary: Accept-Encoding:\n%s", proto, chunked, out)
			}
			var wire int
			fmt.Sscanf(out[strings.LastIndex(out, "wire=")+len("wire="):], "%d", &wire)
			if wire <= 0 || wire > n200k/50 {
				t.Errorf("%s chunked=%s: %d bytes on the wire for %d of JSON; want it gzipped", proto, chunked, wire, n200k)
			}
			// The decoded body, every byte of it.
			body := curl(t, "--cacert", ca, proto, "--compressed", fg.URL(path))
			if len(body) != n200k || strings.Trim(body, "x") != "" {
				t.Errorf("%s chunked=%s: curl decoded %d bytes; want the node's %d", proto, chunked, len(body), n200k)
			}
		}
		plain := curl(t, append([]string{"--cacert", ca, proto}, append(measure, fg.URL("/bytes?n=4096&type=application/json"))...)...)
		if gzipLine.MatchString(plain) || !strings.Contains(plain, "wire=4096") {
			t.Errorf("%s without --compressed: want the node's 4096 bytes as they were:\n%s", proto, plain)
		}
		png := curl(t, append([]string{"--cacert", ca, proto, "--compressed"}, append(measure, fg.URL("/bytes?n=4096&type=image/png"))...)...)
		if gzipLine.MatchString(png) || !strings.Contains(png, "wire=4096") {
			t.Errorf("%s image/png: want it as it was:\n%s", proto, png)
		}
		head := curl(t, "--cacert", ca, proto, "--compressed", "-I", fg.URL("/bytes?n=4096&type=text/plain"))
		if !gzipLine.MatchString(head) || strings.Contains(strings.ToLower(head), "content-length") {
			t.Errorf("%s HEAD: want the GET's Content-Encoding and no length:\n%s", proto, head)
		}
	}
}
