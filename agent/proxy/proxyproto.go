package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// The PROXY protocol (HAProxy's, versions 1 and 2) lets a TCP load balancer
// in front of flowgate tell it who the client is: it sends one header with
// the client's address before the connection's own bytes. Without it, every
// client looks like the balancer, and X-Forwarded-For, the rate limit and
// restricted paths see one address. Connections from the balancers listed
// (Options.From) must start with a header; a header from anyone else is not
// read, since whoever sends it picks the address flowgate believes.

// ProxyProtocolOptions configure NewProxyProtocolListener.
type ProxyProtocolOptions struct {
	// From are the balancers whose connections carry a header.
	From TrustedProxies
	// Timeout bounds the wait for the header; 0 means 10s.
	Timeout time.Duration
	// OnError, when set, is told of every connection dropped for a
	// missing or malformed header.
	OnError func(peer net.Addr, err error)
}

// NewProxyProtocolListener wraps ln so that connections from o.From are
// read for a PROXY protocol header, and report its source address as their
// RemoteAddr. The header is read in the connection's own goroutine: at its
// first Read or RemoteAddr, or at ReadProxyHeader.
func NewProxyProtocolListener(ln net.Listener, o ProxyProtocolOptions) net.Listener {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &proxyProtoListener{Listener: ln, o: o}
}

type proxyProtoListener struct {
	net.Listener
	o ProxyProtocolOptions
}

func (l *proxyProtoListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	peer, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return c, nil
	}
	addr, ok := netip.AddrFromSlice(peer.IP)
	if !ok || !l.o.From.Contains(addr) {
		return c, nil
	}
	return &proxyProtoConn{Conn: c, o: &l.o}, nil
}

// proxyHeaderReader is a connection that starts with a PROXY protocol
// header; ReadProxyHeader reads it (once) and reports what went wrong.
type proxyHeaderReader interface {
	ReadProxyHeader() error
}

// proxyProtoConn is a connection from a balancer. Until its header is read,
// nothing else of it is.
type proxyProtoConn struct {
	net.Conn
	o *ProxyProtocolOptions

	once   sync.Once
	err    error
	remote net.Addr // the client's, or the balancer's for a LOCAL header
	// body is the connection after the header: the bytes read past it
	// first.
	body prefixConn
}

// ReadProxyHeader reads the header within the timeout, once. On failure the
// connection is closed.
func (c *proxyProtoConn) ReadProxyHeader() error {
	c.once.Do(func() {
		c.Conn.SetReadDeadline(time.Now().Add(c.o.Timeout))
		remote, rest, err := readProxyHeader(c.Conn)
		c.Conn.SetReadDeadline(time.Time{})
		if err != nil {
			c.err = fmt.Errorf("PROXY protocol header from %s: %w", c.Conn.RemoteAddr(), err)
			if c.o.OnError != nil {
				c.o.OnError(c.Conn.RemoteAddr(), err)
			}
			c.Conn.Close()
			return
		}
		c.remote, c.body = remote, prefixConn{Conn: c.Conn, prefix: rest}
		if c.remote == nil {
			c.remote = c.Conn.RemoteAddr()
		}
	})
	return c.err
}

func (c *proxyProtoConn) Read(p []byte) (int, error) {
	if err := c.ReadProxyHeader(); err != nil {
		return 0, err
	}
	return c.body.Read(p)
}

// RemoteAddr is the client's address from the header; the balancer's when
// the header is LOCAL (the balancer's own health check) or could not be
// read.
func (c *proxyProtoConn) RemoteAddr() net.Addr {
	if c.ReadProxyHeader() != nil {
		return c.Conn.RemoteAddr()
	}
	return c.remote
}

// NetConn is the connection underneath, for the idle wait of a WebSocket
// tunnel, once the header and any bytes read past it are consumed; nil
// before.
func (c *proxyProtoConn) NetConn() net.Conn {
	if c.ReadProxyHeader() != nil {
		return nil
	}
	return c.body.NetConn()
}

var (
	proxyV1Prefix = []byte("PROXY ")
	proxyV2Sig    = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// maxProxyV1 is the longest version 1 header, CRLF included.
const maxProxyV1 = 107

// readProxyHeader reads a version 1 or 2 header from r and returns the
// source address it names (nil for LOCAL, UNKNOWN and families other than
// TCP over IPv4 and IPv6: the connection's own peer stands) and any bytes
// read past the header.
func readProxyHeader(r io.Reader) (net.Addr, []byte, error) {
	buf := make([]byte, 0, 256)
	// fill reads until buf holds need bytes.
	fill := func(need int) error {
		for len(buf) < need {
			if len(buf) == cap(buf) {
				buf = append(buf, make([]byte, need-len(buf))...)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil && len(buf) < need {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("reading the header: %w", err)
			}
		}
		return nil
	}
	if err := fill(1); err != nil {
		return nil, nil, err
	}
	switch buf[0] {
	case proxyV2Sig[0]:
		if err := fill(16); err != nil {
			return nil, nil, err
		}
		if !bytes.HasPrefix(buf, proxyV2Sig) {
			break
		}
		total := 16 + int(binary.BigEndian.Uint16(buf[14:16]))
		if err := fill(total); err != nil {
			return nil, nil, err
		}
		addr, err := parseProxyV2(buf[12:total])
		return addr, buf[total:], err
	case proxyV1Prefix[0]:
		if err := fill(len(proxyV1Prefix)); err != nil {
			return nil, nil, err
		}
		if !bytes.HasPrefix(buf, proxyV1Prefix) {
			break
		}
		for {
			if end := bytes.Index(buf, []byte("\r\n")); end >= 0 {
				if end+2 > maxProxyV1 {
					break
				}
				addr, err := parseProxyV1(string(buf[len(proxyV1Prefix):end]))
				return addr, buf[end+2:], err
			}
			if len(buf) >= maxProxyV1 {
				break
			}
			if err := fill(len(buf) + 1); err != nil {
				return nil, nil, err
			}
		}
		return nil, nil, errors.New("version 1 header longer than 107 bytes")
	}
	return nil, nil, errors.New("the connection does not start with one (is the balancer set to send it, version 1 or 2?)")
}

// parseProxyV1 parses what follows "PROXY " up to the CRLF.
func parseProxyV1(s string) (net.Addr, error) {
	f := bytes.Fields([]byte(s))
	if len(f) >= 1 && string(f[0]) == "UNKNOWN" {
		return nil, nil
	}
	if len(f) != 5 || (string(f[0]) != "TCP4" && string(f[0]) != "TCP6") {
		return nil, fmt.Errorf("malformed version 1 header %q", "PROXY "+s)
	}
	src, err := netip.ParseAddr(string(f[1]))
	if err != nil || src.Zone() != "" || (string(f[0]) == "TCP4") != src.Is4() {
		return nil, fmt.Errorf("version 1 header: bad source address %q", f[1])
	}
	if dst, err := netip.ParseAddr(string(f[2])); err != nil || dst.Zone() != "" || dst.Is4() != src.Is4() {
		return nil, fmt.Errorf("version 1 header: bad destination address %q", f[2])
	}
	var ports [2]uint16
	for i, p := range f[3:] {
		n, err := strconv.ParseUint(string(p), 10, 16)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("version 1 header: bad port %q", p)
		}
		ports[i] = uint16(n)
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, ports[0])), nil
}

// parseProxyV2 parses a version 2 header from its version and command byte
// (b[0]) on, TLVs included.
func parseProxyV2(b []byte) (net.Addr, error) {
	if b[0]>>4 != 2 {
		return nil, fmt.Errorf("version 2 signature with version %d", b[0]>>4)
	}
	switch b[0] & 0x0f {
	case 0: // LOCAL: the balancer's own connection, a health check
		return nil, nil
	case 1: // PROXY
	default:
		return nil, fmt.Errorf("version 2 header with unknown command %d", b[0]&0x0f)
	}
	body := b[4:]
	switch b[1] {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return nil, errors.New("version 2 header too short for IPv4 addresses")
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))), nil
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return nil, errors.New("version 2 header too short for IPv6 addresses")
		}
		src := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))), nil
	default:
		// UNSPEC, UDP, UNIX: the connection's own peer stands, as the
		// specification asks.
		return nil, nil
	}
}
