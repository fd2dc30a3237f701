package proxy

import (
	"testing"
)

func defaultPolicy(t testing.TB) *PathPolicy {
	t.Helper()
	p, err := NewPathPolicy([]string{"/actuator"}, []string{"/actuator/health"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPathPolicyBlocksTricks(t *testing.T) {
	p := defaultPolicy(t)
	blocked := []string{
		"/actuator",
		"/actuator/",
		"/actuator/env",
		"/actuator/env/",
		"/actuator/heapdump",
		"/ACTUATOR/ENV",
		"/Actuator/Env",
		"/actuator/%65nv",
		"/%61ctuator/env",
		"/actuator/%45NV",
		"/actuator/health/../env",
		"/actuator/health/%2e%2e/env",
		"/actuator/health/%2E%2E/env",
		"/actuator/health/.%2e/env",
		"/actuator/health/%252e%252e/env",
		"/actuator/health/%25252e%25252e/env",
		"/actuator/%2565nv",
		"//actuator/env",
		"/actuator//env",
		"///actuator///env///",
		"/./actuator/./env",
		"/x/../actuator/env",
		"/../actuator/env",
		`/actuator\env`,
		`\actuator\env`,
		"/actuator%5cenv",
		"/actuator%2fenv",
		"/actuator%252fenv",
		"/actuator;jsessionid=1/env",
		"/actuator;/env",
		"/actuator/env;x=y",
		"/actuator/health;/../env",
		"/actuator/health/..;/env",
		"/actuator/health/x/../../env",
		"/actuator/healthx",
		"/actuator/health.json/../../actuator/env",
		"/actuator/env%00",
		"/actuator/health%0a/../env",
		"/actuator/%2525252565nv",               // still encoded after several rounds
		"/actuator/env/%252e%252e/%252e%252e/x", // "/x" fully decoded; under /actuator/env decoded once
		"/actuator/%zz",
	}
	for _, path := range blocked {
		if !p.Blocked(path) {
			n, ok := NormalizePath(path)
			t.Errorf("Blocked(%q) = false (normalised %q, %v); want true", path, n, ok)
		}
	}
	allowed := []string{
		"/",
		"",
		"/actuator/health",
		"/actuator/health/",
		"/actuator/health/liveness",
		"/actuator/health/readiness",
		"/ACTUATOR/HEALTH",
		"/actuator/%68ealth",
		"/actuator/health;x=y",
		"/actuatorx",
		"/actuators/env",
		"/flowable-ui/app/rest/models",
		"/flowable-ui/actuator-docs",
		"/process-api/repository/deployments/abc",
		"/app/actuator/env", // only the prefix counts
		"/x/actuator/../y",
		"/search/50%25",
		"/search/50%25/more",
	}
	for _, path := range allowed {
		if p.Blocked(path) {
			n, ok := NormalizePath(path)
			t.Errorf("Blocked(%q) = true (normalised %q, %v); want false", path, n, ok)
		}
	}
}

func TestPathPolicyNilAndEmpty(t *testing.T) {
	var nilPolicy *PathPolicy
	if nilPolicy.Blocked("/actuator/env") {
		t.Error("nil policy blocked /actuator/env; want nothing blocked")
	}
	empty, err := NewPathPolicy(nil, []string{"/x"})
	if err != nil {
		t.Fatal(err)
	}
	if empty.Blocked("/actuator/%zz") {
		t.Error("policy without blocked prefixes blocked a path; want nothing blocked")
	}
	all, err := NewPathPolicy([]string{"/"}, []string{"/public"})
	if err != nil {
		t.Fatal(err)
	}
	if !all.Blocked("/anything") || all.Blocked("/public/x") {
		t.Errorf("blocked \"/\" with /public allowed: Blocked(/anything)=%v Blocked(/public/x)=%v; want true, false",
			all.Blocked("/anything"), all.Blocked("/public/x"))
	}
}

func TestNewPathPolicyErrors(t *testing.T) {
	tests := []struct {
		blocked, allowed []string
	}{
		{[]string{"actuator"}, nil},
		{nil, []string{"health"}},
		{[]string{"/a\x01"}, nil},
	}
	for _, tt := range tests {
		if _, err := NewPathPolicy(tt.blocked, tt.allowed); err == nil {
			t.Errorf("NewPathPolicy(%q, %q): got nil error; want one", tt.blocked, tt.allowed)
		}
	}
	p, err := NewPathPolicy([]string{"/Actuator/"}, []string{"/ACTUATOR//health/"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Blocked("/actuator/env") || p.Blocked("/actuator/health") {
		t.Error("prefixes given in odd case and slashes are not normalised like request paths")
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"", "/", true},
		{"/", "/", true},
		{"/a/b/", "/a/b", true},
		{"/A/%42", "/a/b", true},
		{"/a/./b/../c", "/a/c", true},
		{"/../../a", "/a", true},
		{`/a\b`, "/a/b", true},
		{"/a;p=1/b;q", "/a/b", true},
		{"/a%252fb", "/a/b", true},
		{"/100%25", "/100%", true},         // a literal percent sign
		{"/100%25/off", "/100%/off", true}, // a literal percent sign mid-path
		{"/%25%25", "/%%", true},           // two of them
		{"/a%2525252541", "", false},       // still encoded after several rounds
		{"/a%zz", "/a%zz", true},           // not an escape: a literal percent sign
		{"/a%2", "/a%2", true},
		{"/a%%34%31", "/aa", true},    // "%%34%31" decodes to "%41", then to "a"
		{"/a%00", "", false},          // control character
		{"/a\x7f", "", false},         // DEL
		{"/caf%C3%A9", "/café", true}, // UTF-8
	}
	for _, tt := range tests {
		got, ok := NormalizePath(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestPathPolicyThroughProxy checks the status a client gets.
func TestPathPolicyThroughProxy(t *testing.T) {
	up := newBackend(t, "a", nil)
	p := newTestProxy(t, Options{Paths: defaultPolicy(t)}, up.upstream())
	url, c := front(t, p)
	for path, want := range map[string]int{
		"/actuator/env":               403,
		"/actuator/health/%2e%2e/env": 403,
		"/actuator/health":            200,
		"/flowable-ui/":               200,
		"/search/50%25":               200,
	} {
		status, body, hdr := get(t, c, url+path, nil)
		if status != want {
			t.Errorf("GET %s: got %d; want %d", path, status, want)
		}
		if want == 403 {
			if body != "forbidden by flowgate path policy\n" {
				t.Errorf("GET %s: body %q", path, body)
			}
			checkErrorHeaders(t, hdr)
		}
	}
	if got := up.hits.Load(); got != 3 {
		t.Errorf("requests that reached the upstream: got %d; want 3", got)
	}
}

// TestPlainPath covers the shortcut for paths that need no normalising:
// every path with something to normalise takes the full reading.
func TestPlainPath(t *testing.T) {
	for raw, want := range map[string]string{
		"/":                            "/",
		"//":                           "/",
		"/actuator":                    "/actuator",
		"/actuator/":                   "/actuator",
		"/Flowable-UI/app/rest/Models": "/Flowable-UI/app/rest/Models",
		"/a.b/..c/c..":                 "/a.b/..c/c..",
	} {
		if got, ok := plainPath(raw); !ok || got != want {
			t.Errorf("plainPath(%q) = %q, %v; want %q, true", raw, got, ok, want)
		}
	}
	for _, raw := range []string{
		"", "x", "/a//b", "/a//", "/./a", "/a/.", "/a/..", "/a/../b", "/a%41", `/a\b`,
		"/a;b", "/a b", "/a\x00", "/a\x7f", "/caf\xc3\xa9", "/a/./",
	} {
		if got, ok := plainPath(raw); ok {
			t.Errorf("plainPath(%q) = %q, true; want false", raw, got)
		}
	}
	p := defaultPolicy(t)
	if n := testing.AllocsPerRun(100, func() { p.Blocked("/flowable-ui/app/rest/Models") }); n != 0 {
		t.Errorf("Blocked allocates %.0f times for a plain path; want 0", n)
	}
}
