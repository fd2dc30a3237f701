package agent

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func redirectorFor(t testing.TB, names []string, unknownHost string, httpsAddr string, publicPort int) *redirector {
	t.Helper()
	cfg := Default()
	cfg.ServerNames = names
	cfg.UnknownHost = unknownHost
	cfg.Listen.HTTPS = httpsAddr
	cfg.Listen.PublicHTTPSPort = publicPort
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	return newRedirector(&cfg, nil)
}

func TestRedirectTarget(t *testing.T) {
	named := redirectorFor(t, []string{"Flowable.Example.com", "*.apps.example.com"}, "redirect", ":443", 0)
	strict := redirectorFor(t, []string{"flowable.example.com", "*.apps.example.com"}, "reject", ":443", 0)
	onlyWildcard := redirectorFor(t, []string{"*.apps.example.com"}, "redirect", ":443", 0)
	anyHost := redirectorFor(t, nil, "redirect", ":8443", 0)
	public := redirectorFor(t, []string{"flowable.example.com"}, "redirect", ":8443", 9443)
	ipNames := redirectorFor(t, []string{"10.0.0.1", "fd00::1"}, "redirect", ":443", 0)
	tests := []struct {
		name string
		rd   *redirector
		host string
		uri  string
		want string
		code int
	}{
		{"server name", named, "flowable.example.com", "/flowable-ui/?a=b", "https://flowable.example.com/flowable-ui/?a=b", 0},
		{"case and port of the Host header dropped", named, "FLOWABLE.example.COM:80", "/", "https://flowable.example.com/", 0},
		{"trailing dot", named, "flowable.example.com.", "/x", "https://flowable.example.com/x", 0},
		{"wildcard name", named, "tenant1.apps.example.com", "/", "https://tenant1.apps.example.com/", 0},
		{"wildcard covers one label only", named, "a.b.apps.example.com", "/", "https://flowable.example.com/", 0},
		{"wildcard does not cover the bare domain", named, "apps.example.com", "/", "https://flowable.example.com/", 0},
		{"unknown host goes to the canonical name", named, "evil.example.net", "/login?next=/", "https://flowable.example.com/login?next=/", 0},
		{"unknown host rejected", strict, "evil.example.net", "/", "", http.StatusMisdirectedRequest},
		{"known host with reject", strict, "x.apps.example.com:8080", "/", "https://x.apps.example.com/", 0},
		{"only wildcards: no canonical name to send strangers to", onlyWildcard, "evil.example.net", "/", "", http.StatusMisdirectedRequest},
		{"no server names: the Host is kept", anyHost, "node1.internal:8080", "/a", "https://node1.internal:8443/a", 0},
		{"IPv4 host", anyHost, "192.0.2.10:8080", "/", "https://192.0.2.10:8443/", 0},
		{"IPv6 host", anyHost, "[2001:db8::1]:8080", "/", "https://[2001:db8::1]:8443/", 0},
		{"IPv6 host without port", anyHost, "[2001:db8::1]", "/", "https://[2001:db8::1]:8443/", 0},
		{"public port", public, "flowable.example.com", "/", "https://flowable.example.com:9443/", 0},
		{"IP server names", ipNames, "[FD00::1]:80", "/", "https://[fd00::1]/", 0},
		{"unknown host to the first IP name", ipNames, "example.com", "/", "https://10.0.0.1/", 0},
		{"asterisk-form target goes to the root", named, "flowable.example.com", "*", "https://flowable.example.com/", 0},
		{"absolute-form target goes to the root", named, "flowable.example.com", "http://evil.example.net/x", "https://flowable.example.com/", 0},
		{"path starting with // stays a path", named, "flowable.example.com", "//evil.example.net/x", "https://flowable.example.com//evil.example.net/x", 0},
		{"empty Host", anyHost, "", "/", "", http.StatusBadRequest},
		{"user info", anyHost, "evil.example.net@good.example.com", "/", "", http.StatusBadRequest},
		{"user info with a name list", named, "flowable.example.com@evil.example.net", "/", "", http.StatusBadRequest},
		{"space", anyHost, "a b", "/", "", http.StatusBadRequest},
		{"path in Host", anyHost, "evil.example.net/x", "/", "", http.StatusBadRequest},
		{"backslash", anyHost, `evil.example.net\x`, "/", "", http.StatusBadRequest},
		{"CRLF", anyHost, "a\r\nSet-Cookie: x=1", "/", "", http.StatusBadRequest},
		{"IPv6 zone", anyHost, "[fe80::1%25eth0]:80", "/", "", http.StatusBadRequest},
		{"two ports", anyHost, "a:1:2", "/", "", http.StatusBadRequest},
		{"label too long", anyHost, strings.Repeat("a", 64) + ".example.com", "/", "", http.StatusBadRequest},
		{"label starting with a dash", anyHost, "-a.example.com", "/", "", http.StatusBadRequest},
		{"empty label", anyHost, "a..example.com", "/", "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, code := tt.rd.target(tt.host, tt.uri)
			if got != tt.want || code != tt.code {
				t.Errorf("target(%q, %q) = %q, %d; want %q, %d", tt.host, tt.uri, got, code, tt.want, tt.code)
			}
		})
	}
}

func TestRedirectHandler(t *testing.T) {
	rd := redirectorFor(t, []string{"flowable.example.com"}, "reject", ":443", 0)
	rd.caPEM = func() []byte { return []byte("-----BEGIN CERTIFICATE-----\n") }
	tests := []struct {
		method, host, target string
		code                 int
		location             string
		body                 string
	}{
		{http.MethodGet, "flowable.example.com", "/flowable-ui/", http.StatusMovedPermanently, "https://flowable.example.com/flowable-ui/", ""},
		{http.MethodHead, "flowable.example.com", "/", http.StatusMovedPermanently, "https://flowable.example.com/", ""},
		{http.MethodPost, "flowable.example.com", "/api", http.StatusPermanentRedirect, "https://flowable.example.com/api", ""},
		{http.MethodPut, "flowable.example.com", "/api", http.StatusPermanentRedirect, "https://flowable.example.com/api", ""},
		{http.MethodGet, "evil.example.net", "/", http.StatusMisdirectedRequest, "", "this host is not served here\n"},
		{http.MethodGet, "flowable.example.com", CAPath, http.StatusOK, "", "-----BEGIN CERTIFICATE-----\n"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.host+tt.target, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://"+tt.host+tt.target, nil)
			w := httptest.NewRecorder()
			rd.ServeHTTP(w, r)
			if w.Code != tt.code || w.Header().Get("Location") != tt.location {
				t.Errorf("got %d Location %q; want %d Location %q", w.Code, w.Header().Get("Location"), tt.code, tt.location)
			}
			if tt.body != "" && w.Body.String() != tt.body {
				t.Errorf("body: got %q; want %q", w.Body.String(), tt.body)
			}
		})
	}
	t.Run("bad host", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = "a b"
		w := httptest.NewRecorder()
		rd.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest || w.Body.String() != "bad Host header\n" {
			t.Errorf("got %d %q; want 400 \"bad Host header\\n\"", w.Code, w.Body.String())
		}
	})
	t.Run("no CA", func(t *testing.T) {
		rd := redirectorFor(t, nil, "redirect", ":443", 0)
		rd.caPEM = func() []byte { return nil }
		w := httptest.NewRecorder()
		rd.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://a.example"+CAPath, nil))
		if w.Code != http.StatusNotFound {
			t.Errorf("CA path without a built-in CA: got %d; want 404", w.Code)
		}
	})
}

// TestRedirectOverTheWire sends raw request lines a browser would not, to a
// real server running the redirector.
func TestRedirectOverTheWire(t *testing.T) {
	rd := redirectorFor(t, []string{"flowable.example.com"}, "redirect", ":8443", 0)
	srv := httptest.NewServer(rd)
	defer srv.Close()
	tests := []struct {
		name     string
		request  string
		code     int
		location string
	}{
		{"origin form", "GET /a?b=c HTTP/1.1\r\nHost: flowable.example.com\r\n\r\n", 301, "https://flowable.example.com:8443/a?b=c"},
		{"absolute form names another host", "GET http://evil.example.net/x HTTP/1.1\r\nHost: flowable.example.com\r\n\r\n", 301, "https://flowable.example.com:8443/x"},
		{"asterisk form", "PUT * HTTP/1.1\r\nHost: flowable.example.com\r\nContent-Length: 0\r\n\r\n", 308, "https://flowable.example.com:8443/"},
		{"OPTIONS * is net/http's own", "OPTIONS * HTTP/1.1\r\nHost: flowable.example.com\r\n\r\n", 200, ""},
		{"HTTP/1.0 without Host goes to the server name", "GET /x HTTP/1.0\r\n\r\n", 301, "https://flowable.example.com:8443/x"},
		{"unknown host", "GET /x HTTP/1.1\r\nHost: evil.example.net\r\n\r\n", 301, "https://flowable.example.com:8443/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tt.request)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.code || resp.Header.Get("Location") != tt.location {
				t.Errorf("got %d Location %q; want %d Location %q", resp.StatusCode, resp.Header.Get("Location"), tt.code, tt.location)
			}
		})
	}
}

func TestPublicHTTPSPort(t *testing.T) {
	tests := []struct {
		https  string
		public int
		want   int
	}{
		{":8443", 0, 8443},
		{":443", 0, 443},
		{"0.0.0.0:8443", 0, 8443},
		{"[::1]:9443", 0, 9443},
		{":8443", 443, 443},
		{":8443", 30443, 30443},
		{":0", 0, 443},
		{"bad", 0, 443},
		{":https", 0, 443},
	}
	for _, tt := range tests {
		cfg := Default()
		cfg.Listen.HTTPS = tt.https
		cfg.Listen.PublicHTTPSPort = tt.public
		if got := publicHTTPSPort(&cfg); got != tt.want {
			t.Errorf("publicHTTPSPort(https=%q, public=%d) = %d; want %d", tt.https, tt.public, got, tt.want)
		}
	}
}
