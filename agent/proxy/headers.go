package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TrustedProxies is a set of networks whose X-Forwarded-For is believed.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies parses CIDRs or single addresses.
func ParseTrustedProxies(list []string) (TrustedProxies, error) {
	var out TrustedProxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, &net.ParseError{Type: "CIDR address", Text: s}
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// trusts reports whether a connection's peer is a trusted proxy.
func (t TrustedProxies) trusts(peer tcpPeer) bool {
	return peer.ok && len(t) > 0 && t.Contains(peer.addr)
}

// Contains reports whether addr belongs to a trusted network.
func (t TrustedProxies) Contains(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range t {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// peerAddr is the address of a TCP peer, without an IPv6 zone (a zoned
// address never matches a trusted prefix and means nothing upstream).
func peerAddr(remoteAddr string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// tcpPeer is a client connection's TCP peer: its address, and that
// address as text. A connection parses it once for all its requests.
type tcpPeer struct {
	addr netip.Addr
	host string
	ok   bool // addr is set; otherwise host is what remoteAddr holds
}

func parsePeer(remoteAddr string) tcpPeer {
	addr, ok := peerAddr(remoteAddr)
	if !ok {
		host, _, _ := net.SplitHostPort(remoteAddr)
		return tcpPeer{host: host}
	}
	return tcpPeer{addr: addr, host: addr.String(), ok: true}
}

// chainFor computes the X-Forwarded-For chain to send upstream and the
// client's address, from the TCP peer and the X-Forwarded-For values it
// sent. The client's own chain is kept only when the TCP peer is
// a trusted proxy; the client address is then the right-most address of the
// chain that is not itself trusted (NGINX's real_ip_recursive).
func (t TrustedProxies) chainFor(remoteAddr string, xff []string) (chain, client string) {
	return t.chainForPeer(parsePeer(remoteAddr), xff)
}

func (t TrustedProxies) chainForPeer(peer tcpPeer, xff []string) (chain, client string) {
	if !peer.ok {
		return peer.host, peer.host
	}
	peerStr := peer.host
	if !t.trusts(peer) {
		return peerStr, peerStr
	}
	var hops []string
	for _, v := range xff {
		for h := range strings.SplitSeq(v, ",") {
			h = strings.TrimSpace(h)
			a, err := netip.ParseAddr(h)
			if err != nil || a.Zone() != "" {
				// A malformed hop breaks the chain of trust: what stands
				// left of it cannot be believed. A zone ("fe80::1%eth0")
				// is meaningless past one link and would carry arbitrary
				// client text into X-Forwarded-For and X-Real-IP.
				hops = hops[:0]
				continue
			}
			hops = append(hops, a.Unmap().String())
		}
	}
	hops = append(hops, peerStr)
	client = peerStr
	for i := len(hops) - 1; i >= 0; i-- {
		client = hops[i]
		a, _ := netip.ParseAddr(hops[i])
		if !t.Contains(a) {
			break
		}
	}
	return strings.Join(hops, ", "), client
}

// filterUpgrade removes an Upgrade request for anything but WebSocket, so
// that "Upgrade: h2c" and other protocols never tunnel through to an
// upstream. It reports whether the request is a WebSocket upgrade.
func filterUpgrade(h http.Header) bool {
	if !hasToken(h["Connection"], "upgrade") {
		h.Del("Upgrade")
		return false
	}
	if len(h["Upgrade"]) == 1 && strings.EqualFold(strings.TrimSpace(h.Get("Upgrade")), "websocket") {
		return true
	}
	h.Del("Upgrade")
	return false
}

// hasToken reports whether a comma-separated header contains token,
// case-insensitively.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
