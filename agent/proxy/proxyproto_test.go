package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// proxyV2 builds a version 2 header: command (0 LOCAL, 1 PROXY), family
// byte, and the address block (with any TLVs).
func proxyV2(cmd, fam byte, body []byte) []byte {
	b := append([]byte(nil), proxyV2Sig...)
	b = append(b, 0x20|cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:16], uint16(len(body)))
	return append(b, body...)
}

func v2TCP4(src, dst [4]byte, sport, dport uint16, tlvs []byte) []byte {
	body := append(append(src[:0:0], src[:]...), dst[:]...)
	body = binary.BigEndian.AppendUint16(body, sport)
	body = binary.BigEndian.AppendUint16(body, dport)
	return proxyV2(1, 0x11, append(body, tlvs...))
}

func TestReadProxyHeader(t *testing.T) {
	v6 := make([]byte, 36)
	copy(v6, net.ParseIP("2001:db8::7").To16())
	copy(v6[16:], net.ParseIP("2001:db8::1").To16())
	binary.BigEndian.PutUint16(v6[32:], 50000)
	binary.BigEndian.PutUint16(v6[34:], 443)
	for _, tt := range []struct {
		name     string
		in       string
		wantAddr string // "" for none (the connection's own peer stands)
		wantRest string
		wantErr  string
	}{
		{"v1 TCP4", "PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\n\x16\x03\x01", "198.51.100.7:51234", "\x16\x03\x01", ""},
		{"v1 TCP6", "PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\nGET", "[2001:db8::7]:51234", "GET", ""},
		{"v1 UNKNOWN", "PROXY UNKNOWN\r\nrest", "", "rest", ""},
		{"v1 UNKNOWN with addresses", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", "", "", ""},
		{"v2 TCP4", string(v2TCP4([4]byte{198, 51, 100, 7}, [4]byte{10, 0, 0, 1}, 51234, 443, nil)) + "\x16", "198.51.100.7:51234", "\x16", ""},
		{"v2 TCP4 with TLVs", string(v2TCP4([4]byte{198, 51, 100, 7}, [4]byte{10, 0, 0, 1}, 1, 443, []byte{0x04, 0, 3, 'a', 'b', 'c'})), "198.51.100.7:1", "", ""},
		{"v2 TCP6", string(proxyV2(1, 0x21, v6)), "[2001:db8::7]:50000", "", ""},
		{"v2 LOCAL", string(proxyV2(0, 0x00, nil)) + "x", "", "x", ""},
		{"v2 UNSPEC", string(proxyV2(1, 0x00, nil)), "", "", ""},
		{"v2 UDP4", string(proxyV2(1, 0x12, make([]byte, 12))), "", "", ""},
		{"no header", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc", "", "", "does not start with one"},
		{"plain HTTP", "GET / HTTP/1.1\r\n\r\n", "", "", "does not start with one"},
		{"PROXY lookalike", "PROXX TCP4", "", "", "does not start with one"},
		{"v1 TCP4 with IPv6", "PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n", "", "", "bad source address"},
		{"v1 bad port", "PROXY TCP4 198.51.100.7 10.0.0.1 65536 443\r\n", "", "", "bad port"},
		{"v1 leading zero port", "PROXY TCP4 198.51.100.7 10.0.0.1 0443 443\r\n", "", "", "bad port"},
		{"v1 fields missing", "PROXY TCP4 198.51.100.7\r\n", "", "", "malformed"},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n", "", "", "bad source address"},
		{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n", "", "", "longer than 107"},
		{"v1 cut short", "PROXY TCP4 198.51.100.7", "", "", "unexpected EOF"},
		{"v2 cut short", string(v2TCP4([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2, nil))[:20], "", "", "unexpected EOF"},
		{"v2 version 3", string(append(append([]byte(nil), proxyV2Sig...), 0x31, 0x11, 0, 0)), "", "", "version 3"},
		{"v2 command 2", string(append(append([]byte(nil), proxyV2Sig...), 0x22, 0x11, 0, 0)), "", "", "unknown command"},
		{"v2 TCP4 too short", string(proxyV2(1, 0x11, make([]byte, 8))), "", "", "too short"},
		{"empty", "", "", "", "unexpected EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// One byte per read: the header must be found however it
			// arrives.
			for _, r := range []io.Reader{strings.NewReader(tt.in), &oneByteReader{strings.NewReader(tt.in)}} {
				addr, rest, err := readProxyHeader(r)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("got %v, %v; want an error with %q", addr, err, tt.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("got error %v", err)
				}
				got := ""
				if addr != nil {
					got = addr.String()
				}
				// What came after the header: what was read past it, then
				// the rest of the stream.
				more, _ := io.ReadAll(r)
				if got != tt.wantAddr || string(rest)+string(more) != tt.wantRest {
					t.Fatalf("got %q and %q after it; want %q and %q", got, string(rest)+string(more), tt.wantAddr, tt.wantRest)
				}
			}
		})
	}
}

type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

// A connection from a listed balancer reports the header's address and
// reads on after it; one from elsewhere is left as it is, header and all;
// one from a balancer without a header is dropped, and OnError told.
func TestProxyProtocolListener(t *testing.T) {
	for _, tt := range []struct {
		name     string
		from     string
		send     string
		wantAddr string // "" for the connection's own address
		wantRead string
		wantErr  bool
	}{
		{"from the balancer", "127.0.0.1/32", "PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nhello", "198.51.100.7:51234", "hello", false},
		{"from elsewhere", "10.0.0.0/8", "PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nhello", "", "PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nhello", false},
		{"LOCAL from the balancer", "127.0.0.1/32", string(proxyV2(0, 0, nil)) + "hello", "", "hello", false},
		{"no header from the balancer", "127.0.0.1/32", "hello, no header here", "", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			from, _ := ParseTrustedProxies([]string{tt.from})
			var reported error
			ln := NewProxyProtocolListener(raw, ProxyProtocolOptions{From: from, Timeout: 2 * time.Second,
				OnError: func(_ net.Addr, err error) { reported = err }})
			defer ln.Close()
			client, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			client.Write([]byte(tt.send))
			client.(*net.TCPConn).CloseWrite()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			wantAddr := tt.wantAddr
			if wantAddr == "" {
				wantAddr = client.LocalAddr().String()
			}
			if got := c.RemoteAddr().String(); got != wantAddr {
				t.Errorf("RemoteAddr: got %s; want %s", got, wantAddr)
			}
			got, err := io.ReadAll(c)
			if tt.wantErr {
				if err == nil || reported == nil || !strings.Contains(err.Error(), "PROXY protocol header from 127.0.0.1") {
					t.Fatalf("read %q, %v (OnError: %v); want the connection dropped with an error naming the balancer", got, err, reported)
				}
				return
			}
			if err != nil || string(got) != tt.wantRead {
				t.Fatalf("read %q, %v; want %q", got, err, tt.wantRead)
			}
		})
	}
}

// A balancer that connects and sends nothing is dropped after the timeout.
func TestProxyProtocolTimeout(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	from, _ := ParseTrustedProxies([]string{"127.0.0.1"})
	ln := NewProxyProtocolListener(raw, ProxyProtocolOptions{From: from, Timeout: 100 * time.Millisecond})
	defer ln.Close()
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.(proxyHeaderReader).ReadProxyHeader()
	if err == nil || !strings.Contains(err.Error(), "timeout") || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %v; want a timeout after 100ms", err, time.Since(start))
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("the connection is still open")
	}
}
