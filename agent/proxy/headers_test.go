package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustTrusted(t testing.TB, list ...string) TrustedProxies {
	t.Helper()
	tp, err := ParseTrustedProxies(list)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func TestParseTrustedProxies(t *testing.T) {
	tp, err := ParseTrustedProxies([]string{"10.0.0.0/8", " 192.168.1.7 ", "fd00::/8", "::ffff:172.16.0.1", "10.1.2.3/8"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "172.16.0.1/32", "10.0.0.0/8"}
	var got []string
	for _, p := range tp {
		got = append(got, p.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsed prefixes (-want +got):\n%s", diff)
	}
	for _, in := range []string{"10.0.0.1", "::ffff:10.0.0.1", "192.168.1.7", "fd12::1", "172.16.0.1"} {
		if !tp.Contains(netip.MustParseAddr(in)) {
			t.Errorf("Contains(%s): got false; want true", in)
		}
	}
	for _, in := range []string{"11.0.0.1", "192.168.1.8", "fe80::1"} {
		if tp.Contains(netip.MustParseAddr(in)) {
			t.Errorf("Contains(%s): got true; want false", in)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "10.0.0.1/8/8"} {
		if _, err := ParseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("ParseTrustedProxies(%q): got nil error; want one", bad)
		}
	}
}

func TestForwardedFor(t *testing.T) {
	trusted := mustTrusted(t, "10.0.0.0/8", "fd00::/8")
	tests := []struct {
		name       string
		trusted    TrustedProxies
		remote     string
		xff        []string
		wantChain  string
		wantClient string
	}{
		{"no trusted proxies: the peer only", nil, "203.0.113.9:5000", []string{"1.2.3.4"}, "203.0.113.9", "203.0.113.9"},
		{"untrusted peer: its chain is dropped", trusted, "203.0.113.9:5000", []string{"1.2.3.4, 10.0.0.1"}, "203.0.113.9", "203.0.113.9"},
		{"trusted peer without a chain", trusted, "10.0.0.5:5000", nil, "10.0.0.5", "10.0.0.5"},
		{"trusted peer: chain kept, client is the hop before it", trusted, "10.0.0.5:5000", []string{"198.51.100.7"}, "198.51.100.7, 10.0.0.5", "198.51.100.7"},
		{"right-most untrusted hop is the client", trusted, "10.0.0.5:5000", []string{"6.6.6.6, 198.51.100.7, 10.0.0.2"}, "6.6.6.6, 198.51.100.7, 10.0.0.2, 10.0.0.5", "198.51.100.7"},
		{"several header lines join in order", trusted, "10.0.0.5:5000", []string{"6.6.6.6", "198.51.100.7,10.0.0.2"}, "6.6.6.6, 198.51.100.7, 10.0.0.2, 10.0.0.5", "198.51.100.7"},
		{"every hop trusted: the left-most", trusted, "10.0.0.5:5000", []string{"10.9.9.9, 10.0.0.2"}, "10.9.9.9, 10.0.0.2, 10.0.0.5", "10.9.9.9"},
		{"malformed hop cuts what stands left of it", trusted, "10.0.0.5:5000", []string{"6.6.6.6, not-an-ip, 198.51.100.7"}, "198.51.100.7, 10.0.0.5", "198.51.100.7"},
		{"malformed last hop: the peer is the client", trusted, "10.0.0.5:5000", []string{"6.6.6.6, 1.2.3.4:80"}, "10.0.0.5", "10.0.0.5"},
		{"empty hops are malformed", trusted, "10.0.0.5:5000", []string{"6.6.6.6,,198.51.100.7"}, "198.51.100.7, 10.0.0.5", "198.51.100.7"},
		{"obfuscated hop", trusted, "10.0.0.5:5000", []string{"6.6.6.6, unknown"}, "10.0.0.5", "10.0.0.5"},
		{"mapped IPv4 is unmapped", trusted, "[::ffff:10.0.0.5]:5000", []string{"::ffff:198.51.100.7"}, "198.51.100.7, 10.0.0.5", "198.51.100.7"},
		{"IPv6 peer and hops", trusted, "[fd00::5]:5000", []string{"2001:db8::1"}, "2001:db8::1, fd00::5", "2001:db8::1"},
		{"zoned hop is malformed", trusted, "10.0.0.5:5000", []string{"6.6.6.6, fe80::1%<script>"}, "10.0.0.5", "10.0.0.5"},
		{"zoned link-local peer is matched without its zone", mustTrusted(t, "fe80::/10"), "[fe80::5%eth0]:5000", []string{"198.51.100.7"}, "198.51.100.7, fe80::5", "198.51.100.7"},
		{"IPv6 untrusted peer", trusted, "[2001:db8::9]:5000", []string{"1.2.3.4"}, "2001:db8::9", "2001:db8::9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			chain, client := tt.trusted.chainFor(r.RemoteAddr, r.Header["X-Forwarded-For"])
			if chain != tt.wantChain || client != tt.wantClient {
				t.Errorf("got chain %q client %q; want chain %q client %q", chain, client, tt.wantChain, tt.wantClient)
			}
		})
	}
}

// TestForwardingHeadersThroughProxy checks what a real upstream receives.
func TestForwardingHeadersThroughProxy(t *testing.T) {
	up := newBackend(t, "a", nil)
	tests := []struct {
		name    string
		trusted []string
		remote  string
		in      map[string]string
		want    map[string]string
	}{
		{
			name:   "untrusted client: its headers are replaced",
			remote: "203.0.113.9:4000",
			in: map[string]string{
				"X-Forwarded-For": "1.1.1.1", "X-Real-Ip": "1.1.1.1", "X-Forwarded-Proto": "http",
				"X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "80", "Forwarded": "for=1.1.1.1",
			},
			want: map[string]string{
				"X-Forwarded-For": "203.0.113.9", "X-Real-Ip": "203.0.113.9", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": "flowable.example.com", "X-Forwarded-Port": "8443", "Forwarded": "",
			},
		},
		{
			name:    "trusted load balancer: the chain is kept, X-Real-IP is the client",
			trusted: []string{"10.0.0.0/8"},
			remote:  "10.1.1.1:4000",
			in:      map[string]string{"X-Forwarded-For": "198.51.100.7", "X-Real-Ip": "6.6.6.6"},
			want:    map[string]string{"X-Forwarded-For": "198.51.100.7, 10.1.1.1", "X-Real-Ip": "198.51.100.7", "X-Forwarded-Proto": "https"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProxy(t, Options{TrustedProxies: mustTrusted(t, tt.trusted...), ForwardedPort: "8443"}, up.upstream())
			r := httptest.NewRequest(http.MethodGet, "http://flowable.example.com/app", nil)
			r.RemoteAddr = tt.remote
			for k, v := range tt.in {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			p.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Fatalf("status: got %d; want 200", w.Code)
			}
			got := up.lastHeader()
			for k, want := range tt.want {
				if vals := got.Values(k); want == "" && len(vals) != 0 || want != "" && (len(vals) != 1 || vals[0] != want) {
					t.Errorf("%s: got %q; want %q", k, vals, want)
				}
			}
		})
	}
}

func TestFilterUpgrade(t *testing.T) {
	tests := []struct {
		name        string
		connection  []string
		upgrade     []string
		wantWS      bool
		wantUpgrade []string
	}{
		{"websocket", []string{"Upgrade"}, []string{"websocket"}, true, []string{"websocket"}},
		{"websocket, any case, token list", []string{"keep-alive, UPGRADE"}, []string{"WebSocket"}, true, []string{"WebSocket"}},
		{"h2c dropped", []string{"Upgrade, HTTP2-Settings"}, []string{"h2c"}, false, nil},
		{"websocket listed with another protocol", []string{"Upgrade"}, []string{"websocket, h2c"}, false, nil},
		{"two Upgrade lines", []string{"Upgrade"}, []string{"websocket", "h2c"}, false, nil},
		{"Upgrade without Connection: upgrade", []string{"keep-alive"}, []string{"websocket"}, false, nil},
		{"Upgrade without any Connection", nil, []string{"websocket"}, false, nil},
		{"Connection: upgrade without Upgrade", []string{"Upgrade"}, nil, false, nil},
		{"plain request", nil, nil, false, nil},
		{"TLS upgrade dropped", []string{"Upgrade"}, []string{"TLS/1.2"}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.connection != nil {
				h["Connection"] = tt.connection
			}
			if tt.upgrade != nil {
				h["Upgrade"] = tt.upgrade
			}
			if got := filterUpgrade(h); got != tt.wantWS {
				t.Errorf("websocket: got %v; want %v", got, tt.wantWS)
			}
			if diff := cmp.Diff(tt.wantUpgrade, h["Upgrade"]); diff != "" {
				t.Errorf("Upgrade header left (-want +got):\n%s", diff)
			}
		})
	}
}

// TestH2CUpgradeNotForwarded sends "Upgrade: h2c" through the proxy: the
// upstream must see neither the Upgrade nor the HTTP2-Settings request.
func TestH2CUpgradeNotForwarded(t *testing.T) {
	up := newBackend(t, "a", nil)
	p := newTestProxy(t, Options{}, up.upstream())
	url, c := front(t, p)
	status, body, _ := get(t, c, url+"/", map[string]string{
		"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA",
	})
	if status != http.StatusOK || body != "a" {
		t.Fatalf("got %d %q; want 200 \"a\" (served as plain HTTP/1.1)", status, body)
	}
	h := up.lastHeader()
	for _, k := range []string{"Upgrade", "Http2-Settings"} {
		if v := h.Values(k); len(v) != 0 {
			t.Errorf("upstream received %s: %q; want none", k, v)
		}
	}
	if v := h.Get("Connection"); strings.Contains(strings.ToLower(v), "upgrade") {
		t.Errorf("upstream received Connection %q; want no upgrade", v)
	}
}
