package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/test/harness"
)

// TestRedirect checks the HTTP listener with curl: a permanent redirect to
// HTTPS on the configured server name, never to a foreign Host.
func TestRedirect(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "a")
	httpsAddr := harness.FreePort(t) // the redirect names the HTTPS port
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	args := []string{"--https-addr", httpsAddr, "--server-name", "flowable.example", "--server-name", "*.apps.example"}
	redirect := harness.StartFlowgate(t, harness.Options{Args: args, Upstreams: []string{stub.Addr}})
	reject := harness.StartFlowgate(t, harness.Options{
		Args:      []string{"--server-name", "flowable.example"},
		Upstreams: []string{stub.Addr},
		Config:    "unknown_host: reject\n",
	})

	tests := []struct {
		name         string
		fg           *harness.Flowgate
		host         string
		target       string
		method       string
		wantCode     string
		wantLocation string
	}{
		{"server name", redirect, "flowable.example", "/flowable-ui/app/?x=1", "GET", "301", "https://flowable.example:" + httpsPort + "/flowable-ui/app/?x=1"},
		{"server name with port", redirect, "flowable.example:80", "/", "GET", "301", "https://flowable.example:" + httpsPort + "/"},
		{"wildcard name", redirect, "task.apps.example", "/a", "GET", "301", "https://task.apps.example:" + httpsPort + "/a"},
		{"post keeps the method", redirect, "flowable.example", "/api", "POST", "308", "https://flowable.example:" + httpsPort + "/api"},
		{"foreign host goes to the server name", redirect, "evil.example", "/login", "GET", "301", "https://flowable.example:" + httpsPort + "/login"},
		{"foreign host rejected", reject, "evil.example", "/login", "GET", "421", ""},
		{"host with user info", redirect, "flowable.example@evil.example", "/", "GET", "400", ""},
		{"host with a path", redirect, "evil.example/x", "/", "GET", "400", ""},
		{"server name with reject", reject, "flowable.example", "/", "GET", "301", "https://flowable.example:" + port(t, reject.HTTPS) + "/"}, // listener on port 0: the bound port
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := curl(t, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-X", tt.method,
				"-H", "Host: "+tt.host, "http://"+tt.fg.HTTP+tt.target)
			code, location, _ := strings.Cut(out, " ")
			if code != tt.wantCode || location != tt.wantLocation {
				t.Errorf("got %s %q; want %s %q", code, location, tt.wantCode, tt.wantLocation)
			}
		})
	}
}

// TestForwardedHeaders checks with curl what the upstream sees: the Host
// as received, the forwarding headers, a spoofed X-Forwarded-For dropped
// from an untrusted client and kept from a trusted proxy, and no h2c
// upgrade.
func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "a")
	httpsAddr := harness.FreePort(t) // X-Forwarded-Port names the real port
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	untrusted := harness.StartFlowgate(t, harness.Options{Args: []string{"--https-addr", httpsAddr}, Upstreams: []string{stub.Addr}})
	trusted := harness.StartFlowgate(t, harness.Options{Args: []string{"--trusted-proxy", "127.0.0.1/32"}, Upstreams: []string{stub.Addr}})

	spoof := []string{"-H", "X-Forwarded-For: 203.0.113.7", "-H", "X-Real-IP: 203.0.113.7", "-H", "X-Forwarded-Proto: http", "-H", "X-Forwarded-Host: evil.example", "-H", "X-Forwarded-Port: 1"}
	tests := []struct {
		name string
		fg   *harness.Flowgate
		args []string
		want map[string]string // header -> the single value the upstream must see
	}{
		{
			name: "untrusted client",
			fg:   untrusted,
			args: spoof,
			want: map[string]string{
				"X-Forwarded-For":   "127.0.0.1",
				"X-Real-Ip":         "127.0.0.1",
				"X-Forwarded-Proto": "https",
				"X-Forwarded-Host":  untrusted.HTTPS,
				"X-Forwarded-Port":  httpsPort,
			},
		},
		{
			name: "trusted proxy",
			fg:   trusted,
			args: spoof,
			want: map[string]string{
				"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
				"X-Real-Ip":         "203.0.113.7",
				"X-Forwarded-Proto": "https",
				"X-Forwarded-Host":  trusted.HTTPS,
			},
		},
		{
			name: "h2c upgrade is not forwarded",
			fg:   untrusted,
			args: []string{"--http1.1", "-H", "Connection: Upgrade, HTTP2-Settings", "-H", "Upgrade: h2c", "-H", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"},
			want: map[string]string{"Upgrade": "", "Connection": "", "Http2-Settings": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--cacert", caFile(t, tt.fg)}, tt.args...)
			body := curl(t, append(args, tt.fg.URL("/headers"))...)
			h := decodeHeaders(t, body)
			if h.Host != tt.fg.HTTPS {
				t.Errorf("Host: got %q; want %q (as the client sent it)", h.Host, tt.fg.HTTPS)
			}
			for name, want := range tt.want {
				got := h.Headers[name]
				switch {
				case want == "" && len(got) != 0:
					t.Errorf("%s: got %q; want it absent", name, got)
				case want != "" && (len(got) != 1 || got[0] != want):
					t.Errorf("%s: got %q; want [%q]", name, got, want)
				}
			}
		})
	}
}

// TestHTTP2 checks that a client offering HTTP/2 gets it, and one that
// does not gets HTTP/1.1.
func TestHTTP2(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "a")
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	ca := caFile(t, fg)
	for flag, want := range map[string]string{"--http2": "2", "--http1.1": "1.1"} {
		got := curl(t, "--cacert", ca, flag, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", fg.URL("/headers"))
		if got != want+" 200" {
			t.Errorf("curl %s: got %q; want %q", flag, got, want+" 200")
		}
	}
}

// TestActuatorBlocked checks that /actuator/env and the usual tricks to
// reach it are refused at the edge, while /actuator/health passes.
func TestActuatorBlocked(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "a")
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{stub.Addr}})
	ca := caFile(t, fg)
	tests := []struct {
		path string
		want string // status code
	}{
		{"/actuator/health", "200"},
		{"/actuator/health/", "200"},
		{"/actuator/env", "403"},
		{"/actuator/heapdump", "403"},
		{"/actuator", "403"},
		{"/actuator/healthz", "403"},
		{"/ACTUATOR/ENV", "403"},
		{"/Actuator/Env", "403"},
		{"/actuator/%65nv", "403"},
		{"/actuator/%2565nv", "403"},
		{"/%61ctuator/env", "403"},
		{"//actuator/env", "403"},
		{"/actuator//env", "403"},
		{"/./actuator/env", "403"},
		{"/actuator;x=1/env", "403"},
		{"/actuator/env;jsessionid=1", "403"},
		{"/actuator/health/../env", "403"},
		{"/actuator/health/..;/env", "403"},
		{"/actuator/health/%2e%2e/env", "403"},
		{"/actuator/health/%2E%2E/env", "403"},
		{"/actuator/health%2f..%2fenv", "403"},
		{`/actuator\env`, "403"},
		{"/actuator/env?format=json", "403"},
		{"/headers/actuator/env", "200"}, // not under the blocked prefix
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			out := curl(t, "--cacert", ca, "--path-as-is", "-D", "-", fg.URL(tt.path))
			head, body, _ := strings.Cut(out, "\r\n\r\n")
			status := strings.Fields(head)[1]
			if status != tt.want {
				t.Errorf("got status %s; want %s\n%s", status, tt.want, out)
			}
			if strings.Contains(body, fakeSecret) {
				t.Errorf("the node's secret came through:\n%s", body)
			}
			reached := strings.Contains(strings.ToLower(head), "\nx-node:")
			if tt.want == "403" && reached {
				t.Errorf("a refused request reached the node:\n%s", head)
			}
		})
	}
}

// port is the port of a host:port address.
func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}
