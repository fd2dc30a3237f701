package agent

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// fuzzRedirectors are the configurations FuzzRedirectTarget picks from.
var fuzzRedirectors = []struct {
	names   []string
	unknown string
	https   string
	public  int
}{
	{[]string{"flowable.example.com", "*.apps.example.com"}, "redirect", ":443", 0},
	{[]string{"flowable.example.com", "*.apps.example.com"}, "reject", ":443", 0},
	{nil, "redirect", ":8443", 0},
	{[]string{"*.apps.example.com"}, "redirect", ":443", 0},
	{[]string{"10.0.0.1", "fd00::1"}, "redirect", ":8443", 30443},
}

// FuzzRedirectTarget checks the HTTP-to-HTTPS redirect for any Host header
// and request target: the Location is always https://HOST[:PORT]/..., where
// HOST is a configured server name (or, without names, the valid host the
// client sent), the authority carries no CR, LF, space, "@" or backslash,
// and url.Parse of the Location yields that same host.
func FuzzRedirectTarget(f *testing.F) {
	f.Add("flowable.example.com", "/flowable-ui/?a=b", uint8(0))
	f.Add("evil.example.net@flowable.example.com", "/", uint8(0))
	f.Add("FLOWABLE.example.com.:80", "//evil.example.net/x", uint8(1))
	f.Add("a.apps.example.com", "*", uint8(3))
	f.Add("[2001:db8::1]:8080", "http://evil.example.net/x?y", uint8(2))
	f.Add("[fe80::1%25eth0]", "/", uint8(2))
	f.Add("10.0.0.1", "/%2F%2Fevil", uint8(4))
	f.Add("a\\b", "/", uint8(2))
	f.Fuzz(func(t *testing.T, host, rawTarget string, sel uint8) {
		fc := fuzzRedirectors[int(sel)%len(fuzzRedirectors)]
		cfg := Default()
		cfg.ServerNames, cfg.UnknownHost, cfg.Listen.HTTPS, cfg.Listen.PublicHTTPSPort = fc.names, fc.unknown, fc.https, fc.public
		rd := newRedirector(&cfg, nil)
		// The server parses the request target before the handler sees it.
		u, err := url.ParseRequestURI(rawTarget)
		if err != nil {
			return
		}
		loc, code := rd.target(host, u.RequestURI())
		if code != 0 {
			if code != http.StatusBadRequest && code != http.StatusMisdirectedRequest {
				t.Fatalf("target(%q, %q): code %d; want 400 or 421", host, rawTarget, code)
			}
			if code == http.StatusMisdirectedRequest && len(fc.names) == 0 {
				t.Fatalf("target(%q, %q): 421 without server names", host, rawTarget)
			}
			return
		}
		rest, ok := strings.CutPrefix(loc, "https://")
		if !ok {
			t.Fatalf("Location %q does not start with https://", loc)
		}
		authority, path, _ := strings.Cut(rest, "/")
		if authority == "" || strings.ContainsAny(authority, "\r\n @\\\t") {
			t.Fatalf("Location %q: bad authority %q", loc, authority)
		}
		if !strings.HasPrefix("/"+path, "/") {
			t.Fatalf("Location %q: no path", loc)
		}
		pu, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", loc, err)
		}
		if pu.Scheme != "https" || pu.User != nil || pu.Host != authority || pu.Opaque != "" {
			t.Fatalf("url.Parse(%q) = scheme %q user %v host %q; want https, no user, host %q", loc, pu.Scheme, pu.User, pu.Host, authority)
		}
		wantPort := ""
		if p := publicHTTPSPort(&cfg); p != 443 {
			wantPort = strings.TrimPrefix(fc.https, ":")
			if fc.public != 0 {
				wantPort = strconv.Itoa(fc.public)
			}
		}
		if pu.Port() != wantPort {
			t.Fatalf("Location %q: port %q; want %q", loc, pu.Port(), wantPort)
		}
		got := pu.Hostname()
		if len(fc.names) > 0 {
			if !servesName(fc.names, got) {
				t.Fatalf("Location %q: host %q is not a server name of %q", loc, got, fc.names)
			}
			return
		}
		want := strings.ToLower(host)
		if h, _, err := net.SplitHostPort(want); err == nil {
			want = h
		}
		want = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(want, "["), "]"), ".")
		if got != want {
			t.Fatalf("Location %q: host %q; want the client's host %q", loc, got, want)
		}
		if net.ParseIP(got) == nil && !validHostname(got) {
			t.Fatalf("Location %q: host %q is not a valid host", loc, got)
		}
	})
}

// servesName reports whether host is one of names, a one-label match of a
// wildcard, or the same IP address.
func servesName(names []string, host string) bool {
	for _, n := range names {
		n = strings.ToLower(n)
		if n == host {
			return true
		}
		if a, b := net.ParseIP(n), net.ParseIP(host); a != nil && b != nil && a.Equal(b) {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			label, after, ok := strings.Cut(host, ".")
			if ok && after == rest && label != "" {
				return true
			}
		}
	}
	return false
}
