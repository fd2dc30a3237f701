package proxy

import (
	"net/http"
	"strings"
	"testing"
)

func TestPathRestricted(t *testing.T) {
	p, err := NewPathPolicy(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Restrict([]PathRestriction{
		{Prefix: "/flowable-admin", AllowFrom: []string{"10.0.0.0/8", "192.0.2.7"}},
		{Prefix: "/idm/api", AllowFrom: []string{"2001:db8::/32"}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, client string
		want         bool
	}{
		{"/flowable-admin", "10.1.2.3", false},
		{"/flowable-admin/app/index.html", "192.0.2.7", false},
		{"/flowable-admin", "192.0.2.8", true},
		{"/flowable-admin/", "203.0.113.9", true},
		{"/FLOWABLE-ADMIN/x", "203.0.113.9", true},
		{"//flowable-admin//x", "203.0.113.9", true},
		{"/flowable-admin;x=1/x", "203.0.113.9", true},
		{"/flowable-%61dmin/x", "203.0.113.9", true},
		{"/flowable-%2561dmin/x", "203.0.113.9", true}, // a node that decodes once
		{"/x/../flowable-admin", "203.0.113.9", true},
		{"/flowable-administrator", "203.0.113.9", false},
		{"/flowable-task", "203.0.113.9", false},
		{"/idm/api/users", "2001:db8::1", false},
		{"/idm/api/users", "::ffff:10.1.2.3", true},
		{"/idm/app", "203.0.113.9", false},
		{"/flowable-admin", "not an address", true},
		{"/flowable-task", "not an address", false},
		{"/%00flowable-admin", "10.1.2.3", true}, // cannot be normalised
	} {
		if got := p.Restricted(tt.path, tt.client); got != tt.want {
			t.Errorf("Restricted(%q, %q) = %v; want %v", tt.path, tt.client, got, tt.want)
		}
	}
	var none *PathPolicy
	if none.Restricted("/flowable-admin", "203.0.113.9") {
		t.Error("a nil policy restricts")
	}
}

func TestPathRestrictErrors(t *testing.T) {
	for _, tt := range []struct {
		r    PathRestriction
		want string
	}{
		{PathRestriction{Prefix: "admin", AllowFrom: []string{"10.0.0.0/8"}}, "must start with /"},
		{PathRestriction{Prefix: "/admin"}, "no network to allow"},
		{PathRestriction{Prefix: "/admin", AllowFrom: []string{"10.0.0.0/99"}}, "CIDR"},
	} {
		p, _ := NewPathPolicy(nil, nil)
		if err := p.Restrict([]PathRestriction{tt.r}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Restrict(%+v): got %v; want an error with %q", tt.r, err, tt.want)
		}
	}
}

// The client a restriction looks at is the one the trusted-proxy rules
// determine, on every path into the proxy; a refused request never reaches
// the node.
func TestPathRestrictedThroughProxy(t *testing.T) {
	up := newBackend(t, "a", nil)
	paths, _ := NewPathPolicy(nil, nil)
	if err := paths.Restrict([]PathRestriction{{Prefix: "/flowable-admin", AllowFrom: []string{"10.0.0.0/8"}}}); err != nil {
		t.Fatal(err)
	}
	trusted, _ := ParseTrustedProxies([]string{"127.0.0.1"})
	p := newTestProxy(t, Options{Paths: paths, TrustedProxies: trusted}, up.upstream())
	for name, send := range viaEachPath(t, p) {
		t.Run(name, func(t *testing.T) {
			for _, tt := range []struct {
				xff  string
				path string
				want int
			}{
				{"10.9.8.7", "/flowable-admin/app", http.StatusOK},
				{"203.0.113.9", "/flowable-admin/app", http.StatusForbidden},
				{"203.0.113.9", "/Flowable-Admin/app", http.StatusForbidden},
				{"203.0.113.9", "/flowable-task/app", http.StatusOK},
				// A chain whose right-most untrusted hop is outside.
				{"10.9.8.7, 203.0.113.9", "/flowable-admin/app", http.StatusForbidden},
			} {
				hits := up.hits.Load()
				req, _ := http.NewRequest(http.MethodGet, tt.path, nil)
				req.Header.Set("X-Forwarded-For", tt.xff)
				resp := send(req)
				if resp.StatusCode != tt.want {
					t.Errorf("%s from %s: got %d; want %d", tt.path, tt.xff, resp.StatusCode, tt.want)
				}
				if reached := up.hits.Load() > hits; reached != (tt.want == http.StatusOK) {
					t.Errorf("%s from %s: reached the node: %v", tt.path, tt.xff, reached)
				}
			}
		})
	}
}
