package proxy

import (
	"net/http"
	"strings"
	"testing"
)

func TestNewResponseHeaders(t *testing.T) {
	if r, err := NewResponseHeaders(nil); r != nil || err != nil {
		t.Errorf("no rules: got %v, %v; want nil, nil", r, err)
	}
	r, err := NewResponseHeaders(map[string]string{"x-frame-options": " SAMEORIGIN ", "Server": "", "Referrer-Policy": "same-origin"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range r.set {
		got = append(got, f.name+"="+f.value[0])
	}
	if strings.Join(got, ",") != "Referrer-Policy=same-origin,X-Frame-Options=SAMEORIGIN" {
		t.Errorf("set: got %v", got)
	}
	if !r.ruled("Server") || !r.ruled("X-Frame-Options") || r.ruled("Cache-Control") {
		t.Errorf("ruled: %v", r.names)
	}
	for _, tt := range []struct {
		m    map[string]string
		want string
	}{
		{map[string]string{"Content-Length": "1"}, "frames the response"},
		{map[string]string{"strict-transport-security": "max-age=1"}, "tls.hsts_max_age"},
		{map[string]string{"Set-Cookie": "a=b"}, "cookies"},
		{map[string]string{"X Frame": "DENY"}, "not a header name"},
		{map[string]string{"X-Frame-Options": "DENY\r\nSet-Cookie: a=b"}, "control character"},
		{map[string]string{"X-Frame-Options": "DENY", "x-frame-options": "SAMEORIGIN"}, "twice"},
	} {
		if _, err := NewResponseHeaders(tt.m); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v; want an error with %q", tt.m, err, tt.want)
		}
	}
}

// The rules apply to the node's responses and to flowgate's own, on every
// path into the proxy: a header set replaces the node's, one removed is
// gone, and flowgate's own value of a header it sets itself stays.
func TestResponseHeaders(t *testing.T) {
	up := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "Apache-Coyote/1.1")
		w.Header().Set("X-Powered-By", "Flowable")
		w.Header().Set("X-Frame-Options", "ALLOWALL")
		w.Header().Set("X-App", "kept")
		w.Write([]byte("a"))
	})
	rules, err := NewResponseHeaders(map[string]string{
		"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff",
		"Server": "", "X-Powered-By": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := NewPathPolicy([]string{"/blocked"}, nil)
	p := newTestProxy(t, Options{ResponseHeaders: rules, Paths: paths}, up.upstream())
	for name, send := range viaEachPath(t, p) {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "/x", nil)
			h := send(req).Header
			for k, want := range map[string]string{"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff", "X-App": "kept"} {
				if got := h.Values(k); len(got) != 1 || got[0] != want {
					t.Errorf("the node's response: %s %q; want [%s]", k, got, want)
				}
			}
			for _, k := range []string{"Server", "X-Powered-By"} {
				if got := h.Values(k); len(got) != 0 {
					t.Errorf("the node's response: %s %q; want it removed", k, got)
				}
			}
			blocked, _ := http.NewRequest(http.MethodGet, "/blocked", nil)
			resp := send(blocked)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("/blocked: got %d; want 403", resp.StatusCode)
			}
			if got := resp.Header.Values("X-Frame-Options"); len(got) != 1 || got[0] != "SAMEORIGIN" {
				t.Errorf("flowgate's 403: X-Frame-Options %q; want [SAMEORIGIN]", got)
			}
			if got := resp.Header.Values("X-Content-Type-Options"); len(got) != 1 {
				t.Errorf("flowgate's 403: X-Content-Type-Options %q; want one value", got)
			}
		})
	}
}
