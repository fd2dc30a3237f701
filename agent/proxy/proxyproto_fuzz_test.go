package proxy

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// FuzzReadProxyHeader: any bytes from a balancer give an address or an
// error, never a panic; what is handed on after a header is exactly the
// input's tail; a version 1 header is never longer than 107 bytes; an
// address given is a TCP address with a port, not the unspecified one of a
// zero-filled slice misread.
func FuzzReadProxyHeader(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nhello",
		"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n",
		"PROXY UNKNOWN\r\n",
		string(v2TCP4([4]byte{198, 51, 100, 7}, [4]byte{10, 0, 0, 1}, 51234, 443, []byte{4, 0, 1, 'x'})) + "tail",
		string(proxyV2(0, 0, nil)),
		string(proxyV2(1, 0x21, make([]byte, 36))),
		"\x16\x03\x01\x00\x05hello",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		addr, rest, err := readProxyHeader(r)
		if err != nil {
			return
		}
		// What was read past the header, then what is left unread.
		rest = append(rest, in[len(in)-r.Len():]...)
		if !bytes.HasSuffix(in, rest) {
			t.Fatalf("%q: handed on %q, which is not the input's tail", in, rest)
		}
		header := in[:len(in)-len(rest)]
		if bytes.HasPrefix(header, proxyV1Prefix) && len(header) > maxProxyV1 {
			t.Fatalf("%q: a version 1 header of %d bytes accepted", in, len(header))
		}
		if addr != nil {
			ta, ok := addr.(*net.TCPAddr)
			if !ok || ta.IP == nil || strings.Contains(ta.String(), "%") {
				t.Fatalf("%q: got address %#v; want a TCP address without a zone", in, addr)
			}
		}
	})
}
