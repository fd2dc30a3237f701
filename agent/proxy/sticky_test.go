package proxy

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/discovery"
)

func TestStickyCookie(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	p := newTestProxy(t, Options{StickyCookie: "FGNODE"}, a.upstream(), b.upstream())
	url, c := front(t, p)

	status, first, hdr := get(t, c, url+"/", nil)
	if status != http.StatusOK {
		t.Fatalf("status: got %d; want 200", status)
	}
	cookie := stickyFrom(t, hdr, "FGNODE")
	if cookie == nil {
		t.Fatalf("first response sets no FGNODE cookie; Set-Cookie: %q", hdr.Values("Set-Cookie"))
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(cookie.Value) {
		t.Errorf("cookie value %q: want 16 hex digits", cookie.Value)
	}
	for _, be := range []*backend{a, b} {
		addr := be.srv.Listener.Addr().String()
		_, port, _ := strings.Cut(addr, ":")
		if strings.Contains(cookie.Value, addr) || strings.Contains(cookie.Value, port) || strings.Contains(cookie.Value, "127.0.0.1") {
			t.Errorf("cookie value %q reveals the upstream address %s", cookie.Value, addr)
		}
	}
	if !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" {
		t.Errorf("cookie attributes: got HttpOnly=%v Secure=%v SameSite=%v Path=%q; want HttpOnly, Secure, Lax, /",
			cookie.HttpOnly, cookie.Secure, cookie.SameSite, cookie.Path)
	}

	// Round robin alone would alternate; the cookie pins every request.
	for i := range 10 {
		_, body, hdr := get(t, c, url+"/", map[string]string{"Cookie": "FGNODE=" + cookie.Value})
		if body != first {
			t.Fatalf("request %d with the cookie: got %q; want %q", i, body, first)
		}
		if sc := hdr.Values("Set-Cookie"); len(sc) != 0 {
			t.Fatalf("request %d: cookie re-sent although the client has it: %q", i, sc)
		}
	}

	// An unknown value is ignored and replaced.
	_, _, hdr = get(t, c, url+"/", map[string]string{"Cookie": "FGNODE=0123456789abcdef"})
	if c := stickyFrom(t, hdr, "FGNODE"); c == nil || c.Value == "0123456789abcdef" {
		t.Errorf("unknown cookie value: got Set-Cookie %q; want a fresh FGNODE", hdr.Values("Set-Cookie"))
	}

	// When the pinned node leaves, the client goes elsewhere and is re-pinned.
	home, other := a, b
	if first == "b" {
		home, other = b, a
	}
	p.SetUpstreams(append([]discovery.Upstream{}, other.upstream()))
	_, body, hdr := get(t, c, url+"/", map[string]string{"Cookie": "FGNODE=" + cookie.Value})
	if body != other.name {
		t.Fatalf("pinned node %s removed: got %q; want %q", home.name, body, other.name)
	}
	moved := stickyFrom(t, hdr, "FGNODE")
	if moved == nil || moved.Value == cookie.Value {
		t.Errorf("after moving: got Set-Cookie %q; want a new FGNODE value", hdr.Values("Set-Cookie"))
	}
}

func TestStickyCookieNotSetWhenDisabled(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := newTestProxy(t, Options{}, a.upstream())
	url, c := front(t, p)
	if _, _, hdr := get(t, c, url+"/", nil); len(hdr.Values("Set-Cookie")) != 0 {
		t.Errorf("Set-Cookie without StickyCookie: got %q; want none", hdr.Values("Set-Cookie"))
	}
}

func stickyFrom(t *testing.T, h http.Header, name string) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}
