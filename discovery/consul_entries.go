package discovery

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// serfHealthCheckID is the node check Consul's gossip layer maintains; when
// it is critical the node is unreachable whatever its service checks say.
const serfHealthCheckID = "serfHealth"

// MetaSecure is the service meta key that marks an instance speaking TLS
// ("true"), as Spring Cloud Consul registers it.
const MetaSecure = "secure"

// EntryError says why one Consul service instance was skipped. It wraps
// ErrBadUpstream.
type EntryError struct {
	// Service is the Consul service name queried.
	Service string
	// ID is the instance's service ID; empty when the entry had none.
	ID string
	// Reason says what is wrong, for the log.
	Reason string
}

// Error names the service, the instance and the reason.
func (e *EntryError) Error() string {
	return fmt.Sprintf("consul service %q instance %q skipped: %s", e.Service, e.ID, e.Reason)
}

// Unwrap returns ErrBadUpstream.
func (e *EntryError) Unwrap() error { return ErrBadUpstream }

// healthCounts counts the instances of one answer by their aggregated state.
// Maintenance and an unreachable node count as critical.
type healthCounts struct {
	Passing, Warning, Critical int
}

// conversion is the result of turning one Consul answer into upstreams.
type conversion struct {
	upstreams []Upstream
	errs      []error
	counts    healthCounts
}

// UpstreamsFromEntries turns the answer of /v1/health/service/<service> into
// upstreams, sorted by Key.
//
// An instance is used when every one of its checks (and of its node's
// checks) passes, or, with passingOnly false, when the worst of them is a
// warning. Instances in maintenance, on a node whose serfHealth check is not
// passing, or with a critical or unknown check state are left out without an
// error: that is Consul saying they are unhealthy.
//
// The address is Service.Address, else Node.Address; the weight is
// Weights.Passing (Weights.Warning for a warning instance), at least 1;
// meta secure=true means TLS. Entries that cannot become an upstream (no
// address, a garbage address, a port outside 1..65535, an address taken by
// another instance) are skipped, each with an *EntryError in the second
// result; they never affect the other entries.
func UpstreamsFromEntries(service string, entries []*api.ServiceEntry, passingOnly bool) ([]Upstream, []error) {
	c := convertEntries(service, entries, passingOnly)
	return c.upstreams, c.errs
}

func convertEntries(service string, entries []*api.ServiceEntry, passingOnly bool) conversion {
	var c conversion
	for i, e := range entries {
		if e == nil || e.Service == nil {
			c.errs = append(c.errs, &EntryError{Service: service, Reason: fmt.Sprintf("entry %d has no service", i)})
			continue
		}
		state, _ := entryState(e)
		switch state {
		case api.HealthPassing:
			c.counts.Passing++
		case api.HealthWarning:
			c.counts.Warning++
		default:
			c.counts.Critical++
		}
		if state != api.HealthPassing && (passingOnly || state != api.HealthWarning) {
			continue
		}
		u, err := upstreamFromEntry(service, e, state)
		if err != nil {
			c.errs = append(c.errs, err)
			continue
		}
		c.upstreams = append(c.upstreams, u)
	}
	var dups []Upstream
	c.upstreams, dups = sortDedupe(c.upstreams)
	for _, d := range dups {
		c.errs = append(c.errs, &EntryError{Service: service, ID: d.ID, Reason: fmt.Sprintf("address %s is already used by another instance", d.Key())})
	}
	return c
}

// entryState aggregates the checks of an entry into passing, warning or
// critical, with the reason when it is not passing. Checks that belong to
// another service instance of the node are ignored.
func entryState(e *api.ServiceEntry) (state, reason string) {
	state = api.HealthPassing
	for _, chk := range e.Checks {
		if chk == nil || (chk.ServiceID != "" && chk.ServiceID != e.Service.ID) {
			continue
		}
		switch {
		case chk.CheckID == api.NodeMaint:
			return api.HealthCritical, "node in maintenance"
		case strings.HasPrefix(chk.CheckID, api.ServiceMaintPrefix):
			return api.HealthCritical, "service in maintenance"
		case chk.CheckID == serfHealthCheckID && chk.Status != api.HealthPassing:
			return api.HealthCritical, "node unreachable (serfHealth " + chk.Status + ")"
		}
		switch chk.Status {
		case api.HealthPassing:
		case api.HealthWarning:
			if state == api.HealthPassing {
				state, reason = api.HealthWarning, "check "+chk.CheckID+" warning"
			}
		case api.HealthCritical:
			state, reason = api.HealthCritical, "check "+chk.CheckID+" critical"
		default:
			state, reason = api.HealthCritical, fmt.Sprintf("check %s in unknown state %q", chk.CheckID, chk.Status)
		}
	}
	return state, reason
}

// upstreamFromEntry converts one healthy entry.
func upstreamFromEntry(service string, e *api.ServiceEntry, state string) (Upstream, error) {
	bad := func(format string, args ...any) error {
		return &EntryError{Service: service, ID: e.Service.ID, Reason: fmt.Sprintf(format, args...)}
	}
	addr := strings.TrimSpace(e.Service.Address)
	if addr == "" && e.Node != nil {
		addr = strings.TrimSpace(e.Node.Address)
	}
	if addr == "" {
		return Upstream{}, bad("no service or node address")
	}
	host, ok := validHost(addr)
	if !ok {
		return Upstream{}, bad("address %q is not an IP address or host name", addr)
	}
	if e.Service.Port < 1 || e.Service.Port > 65535 {
		return Upstream{}, bad("port %d is outside 1..65535", e.Service.Port)
	}
	weight := e.Service.Weights.Passing
	if state == api.HealthWarning {
		weight = e.Service.Weights.Warning
	}
	return Upstream{
		Addr:    net.JoinHostPort(host, strconv.Itoa(e.Service.Port)),
		TLS:     strings.EqualFold(strings.TrimSpace(e.Service.Meta[MetaSecure]), "true"),
		Weight:  max(weight, 1),
		Service: service,
		ID:      e.Service.ID,
	}, nil
}

// validHost accepts a unicast IP address (IPv6 optionally in brackets,
// without a zone) or a DNS host name, and returns it in the form
// JoinHostPort wants. 0.0.0.0 and :: are refused: they are a listener's
// wildcard, not a node's address.
func validHost(s string) (string, bool) {
	bracketed := strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")
	if bracketed {
		s = s[1 : len(s)-1]
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return s, !bracketed && validHostname(s)
	}
	if (bracketed && !ip.Is6()) || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() {
		return "", false
	}
	return ip.String(), true
}

// validHostname reports whether s is a DNS name: dot-separated labels of
// letters, digits, '-' and '_' (used by some service registries), 1 to 63
// bytes each, not starting or ending with '-', 253 bytes at most. A name
// made of digits and dots only is refused: it is a mistyped IPv4 address.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	allDigits := true
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			switch {
			case b >= '0' && b <= '9':
			case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b == '-', b == '_':
				allDigits = false
			default:
				return false
			}
		}
	}
	return !allDigits
}

// sortDedupe sorts us by Key, then by Service, ID and Weight so that the
// order does not depend on the input order, and keeps the first upstream of
// each Key. It
// returns the kept list and the dropped duplicates.
func sortDedupe(us []Upstream) (kept, dups []Upstream) {
	slices.SortFunc(us, func(a, b Upstream) int {
		return cmp.Or(cmp.Compare(a.Key(), b.Key()), cmp.Compare(a.Service, b.Service),
			cmp.Compare(a.ID, b.ID), cmp.Compare(a.Weight, b.Weight))
	})
	kept = us[:0:0]
	for i, u := range us {
		if i > 0 && u.Key() == us[i-1].Key() {
			dups = append(dups, u)
			continue
		}
		kept = append(kept, u)
	}
	return kept, dups
}
