package proxy

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// backendView is how a backend that percent-decodes a path `rounds` times
// would read it: path parameters dropped, backslashes as slashes, dot
// segments resolved, case folded. ok is false when it would reject the path.
func backendView(raw string, rounds int) (string, bool) {
	s := raw
	for range rounds {
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		s = d
	}
	segs := strings.Split(strings.ReplaceAll(s, `\`, "/"), "/")
	for i, seg := range segs {
		segs[i], _, _ = strings.Cut(seg, ";")
	}
	return strings.ToLower(path.Clean("/" + strings.Join(segs, "/"))), true
}

// FuzzNormalizePath checks NormalizePath and the default policy on any path:
// normalising is idempotent, the result is a clean absolute path, and a path
// that reaches /actuator/env, as flowgate or as a backend decoding once or
// twice reads it, is blocked. A restriction on /actuator/env refuses a
// client from outside its networks exactly where blocking the path would,
// and one from inside only a path that cannot be normalised.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "/actuator/health", "/actuator/env", "/ACTUATOR/%65nv", "//actuator//env",
		"/actuator/health/../env", "/actuator/health/%2e%2e/env", "/actuator/health/%252e%252e/env",
		`/actuator\env`, "/actuator;x/env", "/actuator/env/", "/search/50%25", "/a%zz",
		"/actuator/env/%252e%252e/%252e%252e/x", "/caf%C3%A9", "/%%34%31",
	} {
		f.Add(s)
	}
	policy := defaultPolicy(f)
	envBlocked, err := NewPathPolicy([]string{"/actuator/env"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	envRestricted, _ := NewPathPolicy(nil, nil)
	if err := envRestricted.Restrict([]PathRestriction{{Prefix: "/actuator/env", AllowFrom: []string{"10.0.0.0/8"}}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		n, ok := NormalizePath(raw)
		if got, want := envRestricted.Restricted(raw, "203.0.113.9"), envBlocked.Blocked(raw); got != want {
			t.Fatalf("%q from outside the networks: Restricted = %v, but Blocked = %v", raw, got, want)
		}
		if envRestricted.Restricted(raw, "10.1.2.3") && ok {
			t.Fatalf("%q (normalised %q) refused to a client from an allowed network", raw, n)
		}
		if plain, isPlain := plainPath(raw); isPlain {
			// The shortcut for plain paths must agree with the full reading.
			if !ok || strings.ToLower(plain) != n {
				t.Fatalf("plainPath(%q) = %q, but NormalizePath gives %q, %v", raw, plain, n, ok)
			}
			if got, want := policy.Blocked(raw), policy.blockedNormal(n); got != want {
				t.Fatalf("Blocked(%q) = %v on the plain-path shortcut, %v on the normalised path", raw, got, want)
			}
		}
		if ok {
			again, ok2 := NormalizePath(n)
			if !ok2 || again != n {
				t.Fatalf("NormalizePath(%q) = %q, but NormalizePath(%q) = %q, %v; want it unchanged", raw, n, n, again, ok2)
			}
			if !strings.HasPrefix(n, "/") || (n != "/" && strings.HasSuffix(n, "/")) {
				t.Fatalf("NormalizePath(%q) = %q: want an absolute path without a trailing slash", raw, n)
			}
			for _, bad := range []string{"//", "/./", "/../", `\`, ";"} {
				if strings.Contains(n, bad) {
					t.Fatalf("NormalizePath(%q) = %q: contains %q", raw, n, bad)
				}
			}
			if strings.HasSuffix(n, "/.") || strings.HasSuffix(n, "/..") {
				t.Fatalf("NormalizePath(%q) = %q: ends in a dot segment", raw, n)
			}
			if underPrefix(n, "/actuator/env") && !policy.Blocked(raw) {
				t.Fatalf("%q normalises to %q but is not blocked", raw, n)
			}
		}
		for rounds := 1; rounds <= 2; rounds++ {
			if v, ok := backendView(raw, rounds); ok && underPrefix(v, "/actuator/env") && !policy.Blocked(raw) {
				t.Fatalf("%q reads as %q after %d decoding rounds but is not blocked", raw, v, rounds)
			}
		}
	})
}
