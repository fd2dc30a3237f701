package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

// upgradeTransport carries upgrade (WebSocket) requests to one upstream.
// http.Transport is built for keep-alive: it gives every connection a
// reader and a writer of 16 KiB and two goroutines, and the connection it
// hands over after a 101 keeps that reader until the first read. An
// upgraded connection is never reused, so upgradeTransport dials one per
// request, writes the request and reads the answer's head with small
// buffers, and hands the bare connection over as the body of a 101
// (a prefixConn). Any other answer is read from its own connection, which
// closes with the body.
type upgradeTransport struct {
	dialer net.Dialer
	// tls is the client configuration for an HTTPS upstream, with
	// ServerName set; nil means plain TCP.
	tls *tls.Config
	// headerTimeout bounds the wait for the answer's head once the
	// request is written. 0: no limit.
	headerTimeout time.Duration
}

var _ http.RoundTripper = (*upgradeTransport)(nil)

// upgradeBufSize is the size of the writer a request is written with and
// of the reader an answer's head is read with: a browser's upgrade request
// and a 101 fit; a bigger head only takes more reads.
const upgradeBufSize = 2 << 10

// newUpgradeTransport builds the transport for upgrades to u: the dial and
// TLS settings of newTransport, no read timeout.
func newUpgradeTransport(u discovery.Upstream, o TransportOptions) *upgradeTransport {
	t := &upgradeTransport{
		dialer:        net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second},
		headerTimeout: o.ResponseHeaderTimeout,
		tls:           upstreamTLS(u, o),
	}
	return t
}

// CloseIdleConnections does nothing: no connection is kept between
// requests.
func (t *upgradeTransport) CloseIdleConnections() {}

// RoundTrip sends req on a new connection to req.URL.Host and returns the
// answer. A 101's body is the connection (*prefixConn); any other
// answer's body closes the connection when closed. When req's context ends
// before the head of the answer has arrived, the connection is closed and
// RoundTrip fails.
func (t *upgradeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	conn, err := dialUpstream(ctx, &t.dialer, req.URL.Host, t.tls)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	// The context ends a wait by expiring the connection's deadlines.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	resp, br, err := t.exchange(ctx, conn, req)
	if err != nil {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// The body is read through br from conn; the context still
		// watches the connection until the body is closed.
		resp.Body = &closingBody{ReadCloser: resp.Body, conn: conn, stop: stop}
		return resp, nil
	}
	if !stop() {
		// The context ended as the answer arrived.
		conn.Close()
		return nil, ctx.Err()
	}
	uc := &prefixConn{Conn: conn}
	if n := br.Buffered(); n > 0 {
		// The upstream spoke right after its 101, in the same packet.
		uc.prefix = make([]byte, n)
		io.ReadFull(br, uc.prefix)
	}
	resp.Body = uc
	return resp, nil
}

// exchange writes req to conn and reads the head of the answer, skipping
// informational answers other than 101 (passing them to the request's
// httptrace.ClientTrace, as http.Transport does).
func (t *upgradeTransport) exchange(ctx context.Context, conn net.Conn, req *http.Request) (*http.Response, *bufio.Reader, error) {
	bw := bufio.NewWriterSize(conn, upgradeBufSize)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, nil, err
	}
	if t.headerTimeout > 0 {
		if err := setReadDeadline(ctx, conn, time.Now().Add(t.headerTimeout)); err != nil {
			return nil, nil, err
		}
	}
	lim := &headLimiter{r: conn, n: maxResponseHeaderBytes}
	br := bufio.NewReaderSize(lim, upgradeBufSize)
	resp, err := readResponse(br, req, nil)
	if err != nil {
		return nil, nil, err
	}
	lim.n = -1 // the body, if any, is not bounded
	if err := setReadDeadline(ctx, conn, time.Time{}); err != nil {
		return nil, nil, err
	}
	return resp, br, nil
}

// headLimiter bounds what a response head may take: an upstream that
// sends more fails the request rather than growing flowgate's memory.
// n < 0 lifts the bound.
type headLimiter struct {
	r io.Reader
	n int64
}

func (l *headLimiter) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errResponseHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// closingBody is the body of an answer other than 101: closing it closes
// the connection it came on.
type closingBody struct {
	io.ReadCloser
	conn net.Conn
	stop func() bool
}

func (b *closingBody) Close() error {
	err := b.ReadCloser.Close()
	b.stop()
	b.conn.Close()
	return err
}
