package proxy

import (
	"fmt"
	"strings"
)

// PathPolicy blocks requests by path prefix, with exceptions. Matching is done
// on a normalised path, so that case, percent-encoding, repeated slashes,
// backslashes, ";" path parameters and dot segments cannot smuggle a blocked
// path past it: "/ACTUATOR/%65nv", "//actuator//env", "/actuator;x/env" and
// "/actuator/health/../env" are all "/actuator/env".
type PathPolicy struct {
	blocked    []string
	allowed    []string
	restricted []restriction // pathrestrict.go
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
// target path) is refused. A path that cannot be normalised is refused. The
// path is read after each round of percent-decoding, and refused if any
// reading is blocked: "/actuator/env/%252e%252e/%252e%252e/x" is "/x" once
// fully decoded, but a backend that decodes once reads a path under
// /actuator/env.
func (p *PathPolicy) Blocked(rawPath string) bool {
	if p == nil || len(p.blocked) == 0 {
		return false
	}
	if plain, ok := plainPath(rawPath); ok {
		return p.blockedFold(plain)
	}
	readings, ok := readPath(rawPath)
	if !ok {
		return true
	}
	for _, n := range readings {
		if p.blockedNormal(n) {
			return true
		}
	}
	return false
}

// blockedNormal matches one normalised path.
func (p *PathPolicy) blockedNormal(n string) bool { return p.blockedBy(n, underPrefix) }

// blockedFold is blockedNormal for a plain path, ignoring letter case.
func (p *PathPolicy) blockedFold(path string) bool { return p.blockedBy(path, underPrefixFold) }

// blockedBy matches a path with under: an allowed prefix wins over a
// blocked one.
func (p *PathPolicy) blockedBy(path string, under func(path, prefix string) bool) bool {
	for _, a := range p.allowed {
		if under(path, a) {
			return false
		}
	}
	for _, b := range p.blocked {
		if under(path, b) {
			return true
		}
	}
	return false
}

// plainPath reports whether raw, an absolute path, normalises to itself
// but for letter case and one trailing slash, which it returns cut off:
// printable ASCII only, no percent sign, backslash or ";", no empty
// segment and no dot segment. Most request paths are plain, and matching
// them needs no normalised copy.
func plainPath(raw string) (string, bool) {
	if len(raw) > 1 && raw[len(raw)-1] == '/' {
		raw = raw[:len(raw)-1]
	}
	if len(raw) == 0 || raw[0] != '/' {
		return "", false
	}
	seg := 0 // where the current segment starts
	for i := 1; i <= len(raw); i++ {
		if i < len(raw) {
			c := raw[i]
			if c <= ' ' || c >= 0x7f || c == '%' || c == '\\' || c == ';' {
				return "", false
			}
			if c != '/' {
				continue
			}
		}
		switch raw[seg+1 : i] {
		case "", ".", "..":
			if raw != "/" {
				return "", false
			}
		}
		seg = i
	}
	return raw, true
}

// underPrefixFold is underPrefix for a path that may hold upper-case
// letters, against a normalised (lower-case) prefix.
func underPrefixFold(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return len(path) >= len(prefix) && strings.EqualFold(path[:len(prefix)], prefix) &&
		(len(path) == len(prefix) || path[len(prefix)] == '/')
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
// slash. A "%" not followed by two hex digits is a literal percent sign
// ("/search/50%25" is "/search/50%"), so a normalised path normalises to
// itself. It reports false for a path that still carries encoding after
// several rounds or contains control characters.
func NormalizePath(raw string) (string, bool) {
	readings, ok := readPath(raw)
	if !ok {
		return "", false
	}
	return readings[len(readings)-1], true
}

// maxDecodes bounds the rounds of percent-decoding.
const maxDecodes = 3

// readPath returns the normalised path after each round of percent-decoding,
// the first being what a backend that decodes once sees, the last the fully
// decoded path. It reports false when the path still carries encoding after
// maxDecodes rounds or any reading contains a control character.
func readPath(raw string) ([]string, bool) {
	s := raw
	if hasEscape(s) {
		s = unescape(s)
	}
	var out []string
	for round := 1; ; round++ {
		n, ok := normalizeDecoded(s)
		if !ok {
			return nil, false
		}
		if len(out) == 0 || out[len(out)-1] != n {
			out = append(out, n)
		}
		if !hasEscape(s) {
			return out, true
		}
		if round == maxDecodes {
			return nil, false
		}
		s = unescape(s)
	}
}

// normalizeDecoded normalises one reading of a path: lower case, backslashes
// as slashes, ";" parameters dropped, empty and "." segments dropped, ".."
// resolved, no trailing slash.
func normalizeDecoded(s string) (string, bool) {
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

// hasEscape reports whether s holds a percent-encoded byte.
func hasEscape(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && isHex(s[i+1]) && isHex(s[i+2]) {
			return true
		}
	}
	return false
}

// unescape decodes every percent-encoded byte of s and keeps any other "%".
func unescape(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
