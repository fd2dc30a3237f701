package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Upstream is one backend node that flowgate proxies to.
type Upstream struct {
	// Addr is the node's host:port. It is the upstream's identity: two
	// Upstreams with the same Addr and TLS are the same node.
	Addr string `json:"addr"`
	// TLS means flowgate speaks HTTPS to the node.
	TLS bool `json:"tls,omitempty"`
	// Weight is the node's share of traffic relative to the others; values
	// below 1 are treated as 1.
	Weight int `json:"weight"`
	// Service is the Consul service the node came from; empty for static.
	Service string `json:"service,omitempty"`
	// ID is the Consul service ID; empty for static.
	ID string `json:"id,omitempty"`
}

// Key is the identity of an upstream across updates.
func (u Upstream) Key() string {
	if u.TLS {
		return "https://" + u.Addr
	}
	return "http://" + u.Addr
}

// Update is one complete upstream list from a source.
type Update struct {
	// Source names the discoverer ("static", "consul").
	Source string
	// Upstreams is the full current list, sorted by Key. An empty list means
	// the source knows of no healthy node.
	Upstreams []Upstream
}

// Discoverer is a source of upstream lists.
//
// Run sends an Update on up whenever the list changes, starting with the first
// list it knows, until ctx is cancelled. It returns when ctx is cancelled and
// never closes up. Errors talking to the source are handled inside Run (logged,
// retried with backoff, counted); they never produce an empty Update: the last
// list sent stays in force.
type Discoverer interface {
	Run(ctx context.Context, up chan<- Update)
}

// Sort orders upstreams by Key so that lists can be compared.
func Sort(us []Upstream) {
	slices.SortFunc(us, func(a, b Upstream) int { return cmp.Compare(a.Key(), b.Key()) })
}

// Equal reports whether two sorted lists describe the same upstreams.
func Equal(a, b []Upstream) bool { return slices.Equal(a, b) }

// ErrBadUpstream is wrapped by ParseUpstream errors.
var ErrBadUpstream = errors.New("invalid upstream")

// ParseUpstream parses "HOST:PORT", "http://HOST:PORT" or "https://HOST:PORT".
// A URL without a port gets 80 or 443. Paths, queries and user info are
// refused: an upstream is a node, not a location.
func ParseUpstream(s string) (Upstream, error) {
	raw := strings.TrimSpace(s)
	if raw == "" {
		return Upstream{}, fmt.Errorf("%w: empty; want HOST:PORT or http(s)://HOST:PORT", ErrBadUpstream)
	}
	u := Upstream{Weight: 1}
	hostport := raw
	if strings.Contains(raw, "://") {
		pu, err := url.Parse(raw)
		if err != nil {
			return Upstream{}, fmt.Errorf("%w %q: %v", ErrBadUpstream, s, err)
		}
		switch pu.Scheme {
		case "http":
		case "https":
			u.TLS = true
		default:
			return Upstream{}, fmt.Errorf("%w %q: scheme %q; use http:// or https://", ErrBadUpstream, s, pu.Scheme)
		}
		if pu.User != nil || (pu.Path != "" && pu.Path != "/") || pu.RawQuery != "" || pu.Fragment != "" {
			return Upstream{}, fmt.Errorf("%w %q: only scheme, host and port are allowed", ErrBadUpstream, s)
		}
		hostport = pu.Host
		if pu.Port() == "" {
			port := "80"
			if u.TLS {
				port = "443"
			}
			hostport = net.JoinHostPort(pu.Hostname(), port)
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return Upstream{}, fmt.Errorf("%w %q: %v; want HOST:PORT", ErrBadUpstream, s, err)
	}
	if host == "" {
		return Upstream{}, fmt.Errorf("%w %q: missing host", ErrBadUpstream, s)
	}
	if strings.ContainsAny(host, " /\\@?#%") {
		return Upstream{}, fmt.Errorf("%w %q: bad host %q", ErrBadUpstream, s, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return Upstream{}, fmt.Errorf("%w %q: port %q is not a number from 1 to 65535", ErrBadUpstream, s, port)
	}
	u.Addr = net.JoinHostPort(host, port)
	return u, nil
}

// Static is a Discoverer that sends one fixed list and then waits.
type Static struct {
	// Upstreams is the list to send.
	Upstreams []Upstream
}

var _ Discoverer = (*Static)(nil)

// Run sends the list once and blocks until ctx is cancelled.
func (s *Static) Run(ctx context.Context, up chan<- Update) {
	us := slices.Clone(s.Upstreams)
	Sort(us)
	select {
	case up <- Update{Source: "static", Upstreams: us}:
	case <-ctx.Done():
		return
	}
	<-ctx.Done()
}
