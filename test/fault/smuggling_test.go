package fault

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// smuggled is the request hidden in each probe's body. It must never reach
// the upstream unless flowgate itself answered it as a request of its own.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

// smuggleProbe builds a request whose framing is ambiguous. conn is empty or
// a "Connection: close" header line (with the probe's line ending) that ends
// the client connection after the first request.
type smuggleProbe struct {
	name  string
	build func(conn string) string
}

func cl(body string) string { return strconv.Itoa(len(body)) }

// chunkedThenSmuggled is a complete chunked body followed by the smuggled
// request: a server that reads it as chunked sees a second request.
const chunkedThenSmuggled = "0\r\n\r\n" + smuggled

var smuggleProbes = []smuggleProbe{
	{"conflicting Content-Length", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: 5\r\nContent-Length: " + cl(chunkedThenSmuggled) + "\r\n\r\n" + chunkedThenSmuggled
	}},
	{"Content-Length list", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: 5, " + cl(chunkedThenSmuggled) + "\r\n\r\n" + chunkedThenSmuggled
	}},
	{"signed Content-Length", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: +" + cl(chunkedThenSmuggled) + "\r\n\r\n" + chunkedThenSmuggled
	}},
	{"CL+TE", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE+CL short", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE xchunked", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding: xchunked\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE leading space", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding:  chunked\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE chunked, identity", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding: chunked, identity\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE twice", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE space before colon", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding : chunked\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE vertical tab", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding:\x0bchunked\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE folded line", func(c string) string {
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n" + chunkedThenSmuggled
	}},
	{"TE on HTTP/1.0", func(c string) string {
		return "POST /p HTTP/1.0\r\nHost: x\r\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedThenSmuggled
	}},
	{"bare LF headers", func(c string) string {
		c = strings.ReplaceAll(c, "\r\n", "\n")
		return "POST /p HTTP/1.1\nHost: x\n" + c + "Content-Length: " + cl(chunkedThenSmuggled) + "\n\n" + chunkedThenSmuggled
	}},
	{"bare LF chunk lines", func(c string) string {
		body := "0\n\n" + smuggled
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Transfer-Encoding: chunked\r\n\r\n" + body
	}},
	{"chunk size overflow", func(c string) string {
		body := "ffffffffffffffff1\r\nA\r\n0\r\n\r\n" + smuggled
		return "POST /p HTTP/1.1\r\nHost: x\r\n" + c + "Transfer-Encoding: chunked\r\n\r\n" + body
	}},
	{"GET with a body", func(c string) string {
		return "GET /p HTTP/1.1\r\nHost: x\r\n" + c + "Content-Length: " + cl(smuggled) + "\r\n\r\n" + smuggled
	}},
}

// smugglingConfig keeps each probe's outcome its own: no retry on another
// attempt, no passive ejection of the only upstream by earlier probes (see
// TestClientBodyErrors for that).
const smugglingConfig = `
upstreams:
  retry_idempotent: false
  max_fails: 0
`

// TestSmuggling sends request-smuggling probes over raw TLS and checks, at a
// hand-written upstream that parses strictly and counts requests, that
// flowgate and the upstream never disagree about where a request ends:
//
//   - with "Connection: close" on the probe, the upstream sees at most one
//     request, never the smuggled one;
//   - pipelined, every complete request the upstream sees is one that
//     flowgate answered to the client as a request of its own.
//
// Flowgate either rejects a probe (400, 501) or forwards it as one request.
func TestSmuggling(t *testing.T) {
	t.Parallel()
	up := startRawUpstream(t)
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{up.Addr}, Config: smugglingConfig})

	var table []string
	for _, p := range smuggleProbes {
		t.Run(p.name, func(t *testing.T) {
			// Probes run one at a time: the upstream's log belongs to the
			// current probe.
			var verdict []string
			for _, mode := range []string{"close", "pipelined"} {
				conn := ""
				if mode == "close" {
					conn = "Connection: close\r\n"
				}
				up.resetLog()
				wait := 3 * time.Second
				if mode == "pipelined" {
					wait = time.Second // the connection may stay open
				}
				resps := exchange(t, fg, p.build(conn), wait)
				// A request flowgate forwarded may still be on its way.
				time.Sleep(50 * time.Millisecond)
				lines, aborted, perrs := up.requestLines(), up.abortedLines(), up.parseErrors()
				var codes []string
				forwarded := 0
				for _, r := range resps {
					codes = append(codes, strconv.Itoa(r.StatusCode))
					if r.Header.Get("X-Node") == "fault" {
						forwarded++
					}
					switch r.StatusCode {
					case http.StatusOK, http.StatusBadRequest, http.StatusNotImplemented:
					case http.StatusBadGateway:
						// A body that breaks off mid-way aborts the upstream
						// request; TestClientBodyErrors wants a 400 for it.
						if len(aborted) == 0 {
							t.Errorf("%s: got 502 without an aborted upstream request; want 400, 501 or the upstream's 200", mode)
						}
					default:
						t.Errorf("%s: got status %d; want 400, 501 or the upstream's 200", mode, r.StatusCode)
					}
				}
				if len(perrs) > 0 {
					t.Errorf("%s: the upstream could not parse what flowgate sent: %v", mode, perrs)
				}
				if len(lines) != forwarded {
					t.Errorf("%s: the upstream saw %d requests %q but the client got %d upstream answers (statuses %v); want them equal", mode, len(lines), lines, forwarded, codes)
				}
				if mode == "close" {
					if len(lines) > 1 || slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "/smuggled") }) {
						t.Errorf("close: the upstream saw %q; want at most the one probe request, never /smuggled", lines)
					}
					if len(resps) > 1 {
						t.Errorf("close: got %d responses (statuses %v); want at most one", len(resps), codes)
					}
				}
				if len(lines) > 2 {
					t.Errorf("%s: the upstream saw %d requests %q; want at most the probe and, pipelined, the smuggled one", mode, len(lines), lines)
				}
				v := fmt.Sprintf("%s: client got %v, upstream saw %d", mode, codes, len(lines))
				if len(aborted) > 0 {
					v += fmt.Sprintf(" (+%d aborted mid-body)", len(aborted))
				}
				verdict = append(verdict, v)
			}
			table = append(table, fmt.Sprintf("%-28s %s", p.name, strings.Join(verdict, "; ")))
		})
	}
	harness.Figure(t, "request smuggling probes (flowgate's answer; requests reaching the upstream):\n%s", strings.Join(table, "\n"))
	if code, _ := fg.AdminGet("/healthz"); code != http.StatusOK {
		t.Errorf("admin /healthz after the probes: got %d; want 200", code)
	}
}
