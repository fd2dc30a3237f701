package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// tlsLoadOptions configure a new-connection-per-request load.
type tlsLoadOptions struct {
	addr    string
	path    string
	workers int
	d       time.Duration
}

// runTLSLoad opens a new TLS connection for every request ("Connection:
// close") without a session cache, so that each request costs the proxy one
// full ECDSA handshake. It counts the handshakes that resumed all the same
// (tls.ConnectionState.DidResume) in the extra "client_resumed".
//
// Go's client spends about as much CPU on a full handshake as the proxies
// do, so on one core it cannot keep a proxy core busy: its figures are
// bounded by the load generator (see loadBoundBelow in report.go). Nothing
// cheaper that makes full handshakes is at hand (openssl s_time costs more
// per handshake); resumed handshakes are measured with wrk instead.
func runTLSLoad(ctx context.Context, o tlsLoadOptions) loadResult {
	cfg := clientTLS(nil)
	req := []byte("GET " + o.path + " HTTP/1.1\r\nHost: " + o.addr + "\r\nConnection: close\r\n\r\n")
	var resumed atomic.Int64
	r := closedLoop(ctx, o.workers, o.d, func(ctx context.Context, _ int) (bool, string) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", o.addr)
		if err != nil {
			return false, err.Error()
		}
		// Reset instead of a FIN: thousands of connections a second
		// would otherwise leave TIME_WAIT entries that collide with
		// reused client ports (the server, which closes first, keeps
		// them).
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return false, "handshake: " + err.Error()
		}
		if _, err := tc.Write(req); err != nil {
			return false, "write: " + err.Error()
		}
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			return false, "read: " + err.Error()
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return false, "read body: " + err.Error()
		}
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("status %d", resp.StatusCode)
		}
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || (ok && !time.Now().Before(dl)) {
			return true, "" // past the deadline: closedLoop does not count it
		}
		if tc.ConnectionState().DidResume {
			resumed.Add(1)
		}
		return true, ""
	})
	r.extra = map[string]float64{"client_resumed": float64(resumed.Load())}
	return r
}
