package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// ErrNoCertificate is returned by a handshake when no certificate is loaded.
var ErrNoCertificate = errors.New("no certificate loaded")

// Set is an immutable group of certificates with SNI selection. The first
// certificate is the default for clients that send no (or an unknown) server
// name. Build one with NewSet and never modify it afterwards.
type Set struct {
	certs    []*tls.Certificate
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // keyed by the suffix after "*."
}

// NewSet indexes certs by the DNS names of their leaves. Every certificate must
// have its Leaf parsed (tls.X509KeyPair does this since Go 1.23).
func NewSet(certs ...*tls.Certificate) (*Set, error) {
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	s := &Set{
		certs:    certs,
		exact:    make(map[string]*tls.Certificate),
		wildcard: make(map[string]*tls.Certificate),
	}
	for i, c := range certs {
		if c == nil || c.Leaf == nil {
			return nil, fmt.Errorf("certificate %d: leaf not parsed", i)
		}
		for _, name := range c.Leaf.DNSNames {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			if rest, ok := strings.CutPrefix(name, "*."); ok {
				if _, dup := s.wildcard[rest]; !dup {
					s.wildcard[rest] = c
				}
				continue
			}
			if _, dup := s.exact[name]; !dup {
				s.exact[name] = c
			}
		}
		for _, ip := range c.Leaf.IPAddresses {
			if _, dup := s.exact[ip.String()]; !dup {
				s.exact[ip.String()] = c
			}
		}
	}
	return s, nil
}

// Select picks the certificate for a server name: an exact SAN match first,
// then a wildcard match one label deep, then the default.
func (s *Set) Select(serverName string) *tls.Certificate {
	if serverName != "" {
		name := strings.ToLower(strings.TrimSuffix(serverName, "."))
		if c, ok := s.exact[name]; ok {
			return c
		}
		if _, rest, ok := strings.Cut(name, "."); ok {
			if c, ok := s.wildcard[rest]; ok {
				return c
			}
		}
	}
	return s.certs[0]
}

// Certificates returns the certificates in configuration order. The slice
// must not be modified.
func (s *Set) Certificates() []*tls.Certificate { return s.certs }

// Holder publishes a *Set atomically. The zero value holds nothing; its
// GetCertificate then fails with ErrNoCertificate.
type Holder struct {
	p atomic.Pointer[Set]
}

// Load returns the current set, or nil.
func (h *Holder) Load() *Set { return h.p.Load() }

// Store publishes s for every handshake that starts from now on.
func (h *Holder) Store(s *Set) { h.p.Store(s) }

// GetCertificate has the signature of tls.Config.GetCertificate.
func (h *Holder) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := h.p.Load()
	if s == nil {
		return nil, ErrNoCertificate
	}
	return s.Select(hello.ServerName), nil
}

// Describe fills an Info from a certificate's leaf.
func Describe(name, source string, c *tls.Certificate) Info {
	leaf := c.Leaf
	info := Info{Name: name, Source: source}
	if leaf == nil {
		return info
	}
	info.Subject = leaf.Subject.String()
	info.Issuer = leaf.Issuer.String()
	info.DNSNames = append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		info.IPAddresses = append(info.IPAddresses, ip.String())
	}
	info.Serial = SerialHex(leaf)
	info.KeyType = KeyType(leaf)
	info.NotBefore = leaf.NotBefore
	info.NotAfter = leaf.NotAfter
	return info
}

// SerialHex formats a certificate's serial number as lower-case hex.
func SerialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// KeyType names a certificate's public key type, e.g. "ECDSA P-256" or "RSA 2048".
func KeyType(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", k)
	}
}

// Static is a Provider that serves a fixed Set. It is what tests and the
// one-shot CLI use; it never reloads.
type Static struct {
	Holder
	name string
}

var _ Provider = (*Static)(nil)

// NewStatic returns a Provider serving certs, the first being the default.
func NewStatic(name string, certs ...*tls.Certificate) (*Static, error) {
	s, err := NewSet(certs...)
	if err != nil {
		return nil, err
	}
	p := &Static{name: name}
	p.Store(s)
	return p, nil
}

// Run blocks until ctx is cancelled.
func (p *Static) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// Reload does nothing: a static set never changes.
func (p *Static) Reload() {}

// Status describes the served certificates.
func (p *Static) Status() []Info {
	var out []Info
	for _, c := range p.Load().Certificates() {
		out = append(out, Describe(p.name, "static", c))
	}
	return out
}
