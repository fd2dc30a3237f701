package proxy

import (
	"fmt"
	"net/url"
	"strings"
)

// PathPolicy blocks requests by path prefix, with exceptions. Matching is done
// on a normalised path, so that case, percent-encoding, repeated slashes,
// backslashes, ";" path parameters and dot segments cannot smuggle a blocked
// path past it: "/ACTUATOR/%65nv", "//actuator//env", "/actuator;x/env" and
// "/actuator/health/../env" are all "/actuator/env".
type PathPolicy struct {
	blocked []string
	allowed []string
}

// NewPathPolicy builds a policy from blocked prefixes and allowed exceptions.
// A prefix matches itself and everything below it ("/actuator" matches
// "/actuator" and "/actuator/env", not "/actuators").
func NewPathPolicy(blocked, allowed []string) (*PathPolicy, error) {
	p := &PathPolicy{}
	for _, b := range blocked {
		n, err := checkPrefix(b)
		if err != nil {
			return nil, fmt.Errorf("blocked path %q: %w", b, err)
		}
		p.blocked = append(p.blocked, n)
	}
	for _, a := range allowed {
		n, err := checkPrefix(a)
		if err != nil {
			return nil, fmt.Errorf("allowed path %q: %w", a, err)
		}
		p.allowed = append(p.allowed, n)
	}
	return p, nil
}

func checkPrefix(s string) (string, error) {
	if !strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("must start with /")
	}
	n, ok := NormalizePath(s)
	if !ok {
		return "", fmt.Errorf("not a plain path")
	}
	return n, nil
}

// Blocked reports whether a request path (the raw, still-encoded request
// target path) is refused. A path that cannot be normalised is refused.
func (p *PathPolicy) Blocked(rawPath string) bool {
	if p == nil || len(p.blocked) == 0 {
		return false
	}
	n, ok := NormalizePath(rawPath)
	if !ok {
		return true
	}
	for _, a := range p.allowed {
		if underPrefix(n, a) {
			return false
		}
	}
	for _, b := range p.blocked {
		if underPrefix(n, b) {
			return true
		}
	}
	return false
}

func underPrefix(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// NormalizePath turns a raw request path into the canonical form used for
// matching: percent-decoded (repeatedly, so double encoding does not hide a
// character), lower case, backslashes as slashes, ";" parameters removed from
// each segment, empty and "." segments dropped, ".." resolved, no trailing
// slash. It reports false for a path that still carries encoding after
// several rounds or contains control characters.
func NormalizePath(raw string) (string, bool) {
	s := raw
	for i := 0; strings.Contains(s, "%"); i++ {
		if i == 3 {
			return "", false
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		s = d
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", false
		}
	}
	s = strings.ToLower(strings.ReplaceAll(s, `\`, "/"))
	var out []string
	for seg := range strings.SplitSeq(s, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/"), true
}
