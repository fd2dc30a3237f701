package fault

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestClientBodyErrors sends request bodies that break off in the client's
// own framing (a malformed chunk) or exceed http.max_body_bytes while
// streaming (chunked, so no Content-Length tells in advance). Both are the
// client's fault: flowgate must answer 400 or 413, and must not count them
// against the upstream, or a handful of bad requests would eject every
// healthy node (upstreams.max_fails, default 3) and deny service to all.
func TestClientBodyErrors(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "n1")
	big := strings.Repeat("x", 2048)
	probes := []struct {
		name string
		raw  string
		want int
	}{
		{"malformed chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", http.StatusBadRequest},
		{"bare LF chunk line", "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", http.StatusBadRequest},
		{"chunked body over max_body_bytes", fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(big), big), http.StatusRequestEntityTooLarge},
	}
	const rounds = 4 // more than the default max_fails of 3
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			// A flowgate of its own: an ejection must not spill over.
			fg := harness.StartFlowgate(t, harness.Options{
				Upstreams: []string{stub.Addr},
				Config:    "http:\n  max_body_bytes: 1024\n",
			})
			for i := range rounds {
				resps := exchange(t, fg, p.raw, 5*time.Second)
				if len(resps) != 1 {
					t.Fatalf("round %d: got %d responses; want 1", i, len(resps))
				}
				if got := resps[0].StatusCode; got != p.want {
					t.Errorf("round %d: got status %d; want %d", i, got, p.want)
				}
			}
			checkUpstreamUnharmed(t, fg, "bad client bodies")
		})
	}
}

// TestClientBodyStalled: curl declares 100 bytes of body, sends 5 and
// then nothing for 3 s. With http.client_body_timeout 1s flowgate answers
// 408 and cuts the upstream request. Without the timeout the node got the
// stalled request and answered its 5 bytes (200 "hello"), and a client
// that never ends would hold its connection and an upstream connection for
// good. Four stalls at once per protocol, more than max_fails: the
// upstream is not held responsible.
func TestClientBodyStalled(t *testing.T) {
	t.Parallel()
	curl := harness.RequireTool(t, "curl")
	sh := harness.RequireTool(t, "sh")
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{stub.Addr},
		Config:    "http:\n  client_body_timeout: 1s\n",
	})
	for _, proto := range []string{"--http1.1", "--http2"} {
		const stalls = 4
		outs := make(chan string, stalls)
		for range stalls {
			go func() {
				script := fmt.Sprintf("(printf hello; sleep 3) | %s -sk %s -X POST -T - -H 'Content-Length: 100' -w ' %%{http_code}' --max-time 20 %s",
					curl, proto, fg.URL("/echo"))
				out, err := exec.Command(sh, "-c", script).Output()
				if err != nil {
					outs <- fmt.Sprintf("curl: %v: %q", err, out)
					return
				}
				outs <- string(out)
			}()
		}
		for range stalls {
			if got, want := <-outs, "request body timed out\n 408"; got != want {
				t.Errorf("%s stalled upload: got %q; want %q", proto, got, want)
			}
		}
		checkUpstreamUnharmed(t, fg, proto+" stalled uploads")
	}
}

// TestClientMalformedOverHTTP2 sends HTTP/2 requests (curl, a real
// client) whose :authority is no valid Host, or whose method is no token.
// net/http's HTTP/1.1 server answers such a request 400 itself; over
// HTTP/2 flowgate must, too, and must not send it upstream, where it
// failed every attempt and counted against the upstream: three such
// requests ejected every node.
func TestClientMalformedOverHTTP2(t *testing.T) {
	t.Parallel()
	curl := harness.RequireTool(t, "curl")
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	const rounds = 4 // more than the default max_fails of 3
	for _, args := range [][]string{
		{"-H", "Host: a b"}, {"-H", "Host: a\"b"}, {"-H", "Host: a{b}"},
		{"-X", "G(ET"}, {"-X", "P(ST", "-d", "x"}, {"-X", "GET/"},
	} {
		for i := range rounds {
			cmd := append([]string{"-sk", "--http2", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"}, args...)
			out, err := exec.Command(curl, append(cmd, fg.URL("/headers"))...).Output()
			if err != nil {
				t.Fatalf("curl %q: %v", args, err)
			}
			if got := string(out); got != "2 400" {
				t.Errorf("%q, round %d: got HTTP version and status %q; want \"2 400\"", args, i, got)
			}
		}
	}
	checkUpstreamUnharmed(t, fg, "malformed requests")
}

// checkUpstreamUnharmed checks that fg's one upstream is up after what the
// client did, and answers a well-formed request.
func checkUpstreamUnharmed(t *testing.T, fg *harness.Flowgate, after string) {
	t.Helper()
	st := fg.Status()
	if len(st.Upstreams) != 1 || st.Upstreams[0].State != "up" {
		t.Errorf("upstream after %s: got %+v; want state up", after, st.Upstreams)
	}
	if resp, _ := fg.Get("/headers"); resp.StatusCode != http.StatusOK {
		t.Errorf("a well-formed request after %s: got status %d; want 200", after, resp.StatusCode)
	}
}

// TestClientConnectAndTraceRefused: CONNECT asks for a tunnel, a forward
// proxy's job; flowgate answers 501 and sends nothing upstream, where it
// forwarded "CONNECT / HTTP/1.1" before. TRACE would have a node echo the
// request, cookies and all; flowgate answers 405, as NGINX does, where it
// forwarded it before.
func TestClientConnectAndTraceRefused(t *testing.T) {
	t.Parallel()
	curl := harness.RequireTool(t, "curl")
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	for _, tt := range []struct {
		proto, method, target, want string
	}{
		{"--http1.1", "CONNECT", "example.com:443", "CONNECT is not supported: flowgate is a reverse proxy\n 501"},
		{"--http1.1", "TRACE", "/", "TRACE is not allowed\n 405"},
		{"--http2", "TRACE", "/", "TRACE is not allowed\n 405"},
	} {
		before := fg.Status().Upstreams[0].Requests
		out, err := exec.Command(curl, "-sk", tt.proto, "--max-time", "10", "-w", " %{http_code}",
			"-H", "Cookie: session=secret", "-X", tt.method, "--request-target", tt.target, fg.URL("/")).Output()
		if err != nil {
			t.Fatalf("curl %s %s: %v", tt.proto, tt.method, err)
		}
		if got := string(out); got != tt.want {
			t.Errorf("%s %s: got %q; want %q", tt.proto, tt.method, got, tt.want)
		}
		if n := fg.Status().Upstreams[0].Requests - before; n != 0 {
			t.Errorf("requests sent upstream for %s %s: %d; want 0", tt.proto, tt.method, n)
		}
	}
}
