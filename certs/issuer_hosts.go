package certs

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
)

// DefaultHosts returns the names an issued certificate covers when none are
// configured: the machine's host name (if known), "localhost", "127.0.0.1"
// and "::1". The agent appends them to its configured server names.
func DefaultHosts() []string {
	var hosts []string
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, strings.ToLower(name))
	}
	return append(hosts, "localhost", "127.0.0.1", "::1")
}

// hostSet is a validated, de-duplicated list of subject alternative names.
type hostSet struct {
	dns []string // lower case, without a trailing dot, in configuration order
	ips []net.IP
}

// parseHosts validates hosts: each must be an IP address (IPv6 optionally in
// brackets) or a DNS name, optionally with a leading "*." wildcard label.
func parseHosts(hosts []string) (hostSet, error) {
	var hs hostSet
	for _, h := range hosts {
		raw := h
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
			if !slices.ContainsFunc(hs.ips, ip.Equal) {
				hs.ips = append(hs.ips, ip)
			}
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(h, "."))
		if err := validDNSName(name); err != nil {
			return hostSet{}, fmt.Errorf("host %q: %w", raw, err)
		}
		if !slices.Contains(hs.dns, name) {
			hs.dns = append(hs.dns, name)
		}
	}
	if len(hs.dns) == 0 && len(hs.ips) == 0 {
		return hostSet{}, fmt.Errorf("no hosts: name at least one DNS name or IP address")
	}
	return hs, nil
}

// validDNSName checks the syntax of a host name for a certificate SAN.
func validDNSName(name string) error {
	const hint = "must be a DNS name or an IP address, without scheme, port or path"
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%s", hint)
	}
	for i, label := range strings.Split(name, ".") {
		if label == "*" && i == 0 && strings.Contains(name, ".") {
			continue
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%s", hint)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%s", hint)
			}
		}
	}
	return nil
}

// commonName is the subject common name of a leaf for these hosts: the
// first DNS name, else the first IP address.
func (hs hostSet) commonName() string {
	if len(hs.dns) > 0 {
		return hs.dns[0]
	}
	return hs.ips[0].String()
}

// matches reports whether leaf covers exactly these hosts, in any order.
func (hs hostSet) matches(leaf *x509.Certificate) bool {
	if len(leaf.DNSNames) != len(hs.dns) || len(leaf.IPAddresses) != len(hs.ips) {
		return false
	}
	for _, name := range leaf.DNSNames {
		if !slices.Contains(hs.dns, strings.ToLower(name)) {
			return false
		}
	}
	for _, ip := range leaf.IPAddresses {
		if !slices.ContainsFunc(hs.ips, ip.Equal) {
			return false
		}
	}
	return true
}

// String lists the hosts for logs.
func (hs hostSet) String() string {
	out := slices.Clone(hs.dns)
	for _, ip := range hs.ips {
		out = append(out, ip.String())
	}
	return strings.Join(out, ",")
}
