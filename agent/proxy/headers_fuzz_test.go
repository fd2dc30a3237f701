package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// fuzzTrusted are the trusted-proxy settings FuzzForwardedFor picks from.
var fuzzTrusted = [][]string{
	nil,
	{"10.0.0.0/8", "fd00::/8"},
	{"0.0.0.0/0", "::/0"},
	{"192.0.2.1", "2001:db8::1"},
}

// FuzzForwardedFor checks the X-Forwarded-For chain built for any header a
// client may send: the chain never carries a client-supplied hop unless the
// TCP peer is trusted, every hop is a plain IP address in canonical form,
// the last hop is the peer, and the client address is the right-most hop
// that is not trusted.
func FuzzForwardedFor(f *testing.F) {
	f.Add("198.51.100.7", "", []byte{10, 0, 0, 5}, uint8(1))
	f.Add("6.6.6.6, 198.51.100.7, 10.0.0.2", "", []byte{10, 0, 0, 5}, uint8(1))
	f.Add("1.2.3.4", "5.6.7.8", []byte{203, 0, 113, 9}, uint8(1))
	f.Add("6.6.6.6, garbage, 198.51.100.7", "", []byte{10, 0, 0, 5}, uint8(2))
	f.Add("::ffff:198.51.100.7", "2001:db8::1", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5}, uint8(1))
	f.Add("fe80::1%eth0", "", []byte{192, 0, 2, 1}, uint8(3))
	f.Add(" , ,", "1.1.1.1 ,2.2.2.2", []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}, uint8(0))
	f.Fuzz(func(t *testing.T, xff1, xff2 string, peerBytes []byte, sel uint8) {
		trusted := mustTrusted(t, fuzzTrusted[int(sel)%len(fuzzTrusted)]...)
		var peer netip.Addr
		switch {
		case len(peerBytes) >= 16:
			peer = netip.AddrFrom16([16]byte(peerBytes[:16]))
		case len(peerBytes) >= 4:
			peer = netip.AddrFrom4([4]byte(peerBytes[:4]))
		default:
			peer = netip.MustParseAddr("10.0.0.5")
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = netip.AddrPortFrom(peer, 4000).String()
		for _, v := range []string{xff1, xff2} {
			if v != "" {
				r.Header.Add("X-Forwarded-For", v)
			}
		}
		chain, client := trusted.chainFor(r.RemoteAddr, r.Header["X-Forwarded-For"])
		peerStr := peer.Unmap().String()

		if !trusted.Contains(peer) {
			if chain != peerStr || client != peerStr {
				t.Fatalf("untrusted peer %s: got chain %q client %q; want both %q", peerStr, chain, client, peerStr)
			}
			return
		}
		hops := strings.Split(chain, ", ")
		for _, h := range hops {
			a, err := netip.ParseAddr(h)
			if err != nil {
				t.Fatalf("chain %q: hop %q is not an IP address: %v", chain, h, err)
			}
			if a.Zone() != "" || a.Is4In6() || a.String() != h {
				t.Fatalf("chain %q: hop %q is not a plain canonical address", chain, h)
			}
		}
		if last := hops[len(hops)-1]; last != peerStr {
			t.Fatalf("chain %q: last hop %q; want the peer %s", chain, last, peerStr)
		}
		// The client is the right-most untrusted hop, or the left-most when
		// every hop is trusted.
		want := hops[0]
		for j := len(hops) - 1; j >= 0; j-- {
			if !trusted.Contains(netip.MustParseAddr(hops[j])) {
				want = hops[j]
				break
			}
		}
		if client != want {
			t.Fatalf("chain %q: client %q; want %q", chain, client, want)
		}
	})
}
