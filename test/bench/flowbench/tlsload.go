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
	resume  bool // offer session resumption (a shared client session cache)
	d       time.Duration
}

// runTLSLoad opens a new TLS connection for every request ("Connection:
// close"), so that each request costs the proxy one handshake: a full
// ECDSA handshake, or with resume a resumption by session ticket. It
// counts the resumptions the client saw (tls.ConnectionState.DidResume)
// and those the server reported in an X-TLS-Resumed response header.
func runTLSLoad(ctx context.Context, o tlsLoadOptions) loadResult {
	var cache tls.ClientSessionCache
	if o.resume {
		cache = tls.NewLRUClientSessionCache(1024)
	}
	cfg := clientTLS(cache, nil)
	req := []byte("GET " + o.path + " HTTP/1.1\r\nHost: " + o.addr + "\r\nConnection: close\r\n\r\n")
	var resumed, serverResumed, serverReported atomic.Int64
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
		switch resp.Header.Get("X-TLS-Resumed") {
		case "r", "1", "true":
			serverResumed.Add(1)
			serverReported.Add(1)
		case ".", "0", "false":
			serverReported.Add(1)
		}
		return true, ""
	})
	r.extra = map[string]float64{
		"client_resumed":  float64(resumed.Load()),
		"server_resumed":  float64(serverResumed.Load()),
		"server_reported": float64(serverReported.Load()),
	}
	return r
}
