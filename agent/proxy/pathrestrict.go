package proxy

import (
	"fmt"
	"net/netip"
)

// PathRestriction lets only clients from some networks reach a path prefix,
// as NGINX's allow and deny in a location block: Flowable's admin, modeler
// and IDM applications, say, from the office network only.
type PathRestriction struct {
	// Prefix is the path prefix, matched as the blocked paths are.
	Prefix string
	// AllowFrom are the networks (CIDRs or addresses) whose clients may
	// reach it. The client is the address that TrustedProxies determine.
	AllowFrom []string
}

type restriction struct {
	prefix string // normalised
	allow  TrustedProxies
}

// Restrict adds network restrictions to the policy. Each needs a path and
// at least one network.
func (p *PathPolicy) Restrict(rs []PathRestriction) error {
	for _, r := range rs {
		n, err := checkPrefix(r.Prefix)
		if err != nil {
			return fmt.Errorf("restricted path %q: %w", r.Prefix, err)
		}
		if len(r.AllowFrom) == 0 {
			return fmt.Errorf("restricted path %q: no network to allow; to refuse every client, block the path", r.Prefix)
		}
		nets, err := ParseTrustedProxies(r.AllowFrom)
		if err != nil {
			return fmt.Errorf("restricted path %q: %v; use CIDRs like 10.0.0.0/8 or single addresses", r.Prefix, err)
		}
		p.restricted = append(p.restricted, restriction{prefix: n, allow: nets})
	}
	return nil
}

// Restricted reports whether a client (its address as text, after the
// trusted-proxy rules) may not reach a request path (raw, still encoded):
// the path, read as Blocked reads it, falls under a restricted prefix the
// client's network is not allowed. A path that cannot be normalised, or a
// client address that does not parse, is refused where any restriction
// exists.
func (p *PathPolicy) Restricted(rawPath, client string) bool {
	if p == nil || len(p.restricted) == 0 {
		return false
	}
	addr, err := netip.ParseAddr(client)
	ok := err == nil
	refused := func(path string, under func(path, prefix string) bool) bool {
		for _, r := range p.restricted {
			if under(path, r.prefix) && (!ok || !r.allow.Contains(addr)) {
				return true
			}
		}
		return false
	}
	if plain, isPlain := plainPath(rawPath); isPlain {
		return refused(plain, underPrefixFold)
	}
	readings, normal := readPath(rawPath)
	if !normal {
		return true
	}
	for _, n := range readings {
		if refused(n, underPrefix) {
			return true
		}
	}
	return false
}
