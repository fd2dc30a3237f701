package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/test/harness"
)

// TestFastPathMatchesNetHTTP sends the same HTTP/1.1 requests with curl to
// a flowgate on its HTTP/1.1 fast path (the default) and to one with
// http.fast_path off, which leaves every request to Go's net/http server:
// the answers, and what the upstream sees, must be the same.
func TestFastPathMatchesNetHTTP(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "a")
	on := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	off := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}, Config: "http:\n  fast_path: false\n"})

	tests := []struct {
		name string
		args []string // curl arguments before the URL
		path string
	}{
		{"GET whose headers the upstream echoes", []string{"-H", "X-Forwarded-For: 203.0.113.7", "-H", "X-Forwarded-Host: evil.example",
			"-H", "Cookie: a=1", "-H", "Cookie: b=2", "-H", "Proxy-Connection: keep-alive", "-H", "User-Agent:"}, "/headers/x?y=1&z=%2F"},
		{"GET with a semicolon and a bad escape in the query", nil, "/headers/q?a=1;b=2&c=%zz&d=4"},
		{"HEAD", []string{"-I"}, "/bytes?n=100"},
		{"GET with a length", nil, "/bytes?n=70000"},
		{"GET chunked", nil, "/bytes?n=70000&chunked=1"},
		{"GET of a blocked path", nil, "/actuator/env"},
		{"GET of an allowed path", nil, "/actuator/health"},
		{"GET the upstream does not have", nil, "/nope"},
		{"POST", []string{"-d", "a=1"}, "/headers"},
		{"GET with Connection: close", []string{"-H", "Connection: close"}, "/headers"},
		{"GET with a body", []string{"-X", "GET", "-d", "x"}, "/headers"},
		{"GET with Expect", []string{"-H", "Expect: 100-continue"}, "/headers"},
		{"OPTIONS", []string{"-X", "OPTIONS"}, "/headers"},
		{"POST of JSON, echoed", []string{"-H", "Content-Type: application/json", "--data-binary", `{"processDefinitionKey":"oneTask"}`}, "/echo"},
		{"PUT of 16 KiB, echoed", []string{"-X", "PUT", "--data-binary", strings.Repeat("p", 16<<10)}, "/echo"},
		{"POST of 20 KiB, echoed", []string{"--data-binary", strings.Repeat("q", 20<<10)}, "/echo"},
		{"POST without a body", []string{"-X", "POST"}, "/headers"},
		{"PATCH", []string{"-X", "PATCH", "-d", "x=1"}, "/headers"},
		{"DELETE", []string{"-X", "DELETE"}, "/headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotOn := curlExchange(t, on, tt.args, tt.path)
			gotOff := curlExchange(t, off, tt.args, tt.path)
			if gotOn.status != gotOff.status || gotOn.body != gotOff.body || !slices.Equal(gotOn.fields, gotOff.fields) {
				t.Errorf("fast path:\n%s\nnet/http:\n%s", gotOn, gotOff)
			}
			if gotOn.status == 0 {
				t.Errorf("no response: %s", gotOn)
			}
			if i := slices.Index(tt.args, "--data-binary"); tt.path == "/echo" && gotOn.body != tt.args[i+1] {
				t.Errorf("echo: got %d bytes back; want the %d sent", len(gotOn.body), len(tt.args[i+1]))
			}
			if gotOn.dates != 1 || gotOff.dates != 1 {
				t.Errorf("Date fields: %d on the fast path, %d through net/http; want one each", gotOn.dates, gotOff.dates)
			}
		})
	}

	// One connection carries GETs on the fast path, then a POST, which
	// stays there, then more GETs. (A chunked or larger body hands the
	// connection to net/http; the table above has one.)
	out := curl(t, "--http1.1", "-k", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
		on.URL("/bytes?n=10"), "--next", "--http1.1", "-k", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", on.URL("/headers"),
		"--next", "--http1.1", "-k", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", "-d", "a=1", on.URL("/echo"),
		"--next", "--http1.1", "-k", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", on.URL("/bytes?n=10"))
	if want := "200 1\n200 0\n200 0\n200 0\n"; out != want {
		t.Errorf("GET, GET, POST, GET on one connection: got %q (status, new connections); want %q", out, want)
	}
}

// TestQueryForwardedAsSent holds what the upstream receives as the
// request target to what the client sent, over HTTP/1.1 and HTTP/2, on
// the fast path and off it: a query parameter flowgate cannot parse (a
// ";", a bad escape) is the upstream's business, not dropped.
func TestQueryForwardedAsSent(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "a")
	on := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	off := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}, Config: "http:\n  fast_path: false\n"})
	const target = "/headers/q?a=1;b=2&c=%zz&d=4&e=%2F"
	for _, fg := range []struct {
		name string
		fg   *harness.Flowgate
	}{{"fast path", on}, {"net/http", off}} {
		for _, proto := range []string{"--http1.1", "--http2"} {
			got := decodeHeaders(t, curl(t, proto, "-k", fg.fg.URL(target)))
			if got.RequestURI != target {
				t.Errorf("%s, %s: the upstream got %q; want %q", fg.name, proto, got.RequestURI, target)
			}
		}
	}
}

// exchange is what curl saw of one request, with the flowgate's own
// address taken out, and what the upstream saw when it echoed it.
type exchange struct {
	status int
	fields []string // response fields other than Date and the framing
	dates  int      // Date fields
	body   string
}

func (e exchange) String() string {
	return strings.Join(append([]string{http.StatusText(e.status)}, e.fields...), "\n") + "\n\n" + e.body
}

func curlExchange(t *testing.T, fg *harness.Flowgate, args []string, path string) exchange {
	t.Helper()
	all := append([]string{"--http1.1", "-k", "-i"}, args...)
	out := curl(t, append(all, fg.URL(path))...)
	out = strings.ReplaceAll(out, fg.HTTPS, "FLOWGATE")
	_, port, _ := strings.Cut(fg.HTTPS, ":")
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	var e exchange
	if f := strings.Fields(lines[0]); len(f) >= 2 {
		e.status, _ = atoi(f[1])
	}
	for _, l := range lines[1:] {
		k, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(k) {
		case "date":
			e.dates++
			continue
		case "content-length", "transfer-encoding":
			continue
		}
		e.fields = append(e.fields, l)
	}
	slices.Sort(e.fields)
	e.body = body
	var echo headersReply
	if strings.HasPrefix(path, "/headers") && e.status == 200 && json.Unmarshal([]byte(body), &echo) == nil {
		// The upstream's view, without what differs between the two
		// flowgates (their ports).
		delete(echo.Headers, "X-Forwarded-Port")
		for _, v := range echo.Headers["X-Forwarded-Host"] {
			if strings.Contains(v, port) {
				echo.Headers["X-Forwarded-Host"] = []string{"FLOWGATE"}
			}
		}
		b, _ := json.MarshalIndent(echo, "", " ")
		e.body = string(b)
	}
	return e
}

func atoi(s string) (int, bool) {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
