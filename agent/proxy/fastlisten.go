package proxy

import (
	"crypto/tls"
	"errors"
	"log"
	"net"
	"sync"
	"time"
)

// Listen returns the HTTPS listener for net/http's server: it accepts
// from raw and completes each TLS handshake with config itself (within the
// read header timeout, as net/http's server does). s serves an HTTP/1.1
// connection and hands it over through Accept when it meets a request it
// leaves to net/http; an HTTP/2 connection goes to Accept at once.
// Handshake errors are logged to errLog as net/http's server logs them.
func (s *ConnServer) Listen(raw net.Listener, config *tls.Config, errLog *log.Logger) net.Listener {
	l := &httpsListener{raw: raw, config: config, fast: s, errLog: errLog,
		conns: make(chan net.Conn), done: make(chan struct{})}
	s.handoff = l.handoff
	l.start()
	return l
}

type httpsListener struct {
	raw    net.Listener
	config *tls.Config
	fast   *ConnServer
	errLog *log.Logger

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	// err is why accepting stopped when raw failed, for Accept; set
	// before done is closed.
	err error
}

// start accepts connections until the listener is closed.
func (l *httpsListener) start() {
	go func() {
		var delay time.Duration
		for {
			c, err := l.raw.Accept()
			if err != nil {
				select {
				case <-l.done:
					return
				default:
				}
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Temporary() { //nolint:staticcheck // as net/http's server decides
					// The listener is broken: net/http's server returns
					// the error, and flowgate stops.
					l.stop(err)
					return
				}
				// Out of descriptors and the like: back off as net/http's
				// server does, then try again.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.errLog.Printf("http: Accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			delay = 0
			go l.serve(c)
		}
	}()
}

// serve completes the handshake of one connection and passes it on.
func (l *httpsListener) serve(c net.Conn) {
	if h, ok := c.(proxyHeaderReader); ok && h.ReadProxyHeader() != nil {
		return // closed; its OnError was told
	}
	cc := newCoalescingConn(c)
	tc := tls.Server(cc, l.config)
	if d := l.fast.o.ReadHeaderTimeout; d > 0 {
		c.SetDeadline(time.Now().Add(d))
	}
	if err := tc.Handshake(); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			// As net/http's server answers plain HTTP on its TLS port.
			re.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"))
			re.Conn.Close()
			return
		}
		l.errLog.Printf("http: TLS handshake error from %s: %v", c.RemoteAddr(), err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		cc.coalesce()
		l.handoff(tc)
		return
	}
	l.fast.serveConn(tc)
}

func looksLikeHTTP(h [5]byte) bool {
	switch string(h[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// handoff gives a connection to net/http's server, or closes it once the
// listener is closed.
func (l *httpsListener) handoff(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the connections for net/http's server.
func (l *httpsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting. Connections being served stay open (see
// proxy.ConnServer.Shutdown).
func (l *httpsListener) Close() error { return l.stop(nil) }

// stop stops accepting; err, when not nil, is what Accept returns from
// then on.
func (l *httpsListener) stop(err error) error {
	var cerr error
	l.once.Do(func() {
		l.err = err
		close(l.done)
		cerr = l.raw.Close()
	})
	return cerr
}

func (l *httpsListener) Addr() net.Addr { return l.raw.Addr() }
