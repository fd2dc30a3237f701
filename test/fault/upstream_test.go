package fault

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Paths on which rawUpstream misbehaves; every other path gets a 200.
const (
	pathHang      = "/fault/hang"      // reads the request, never answers
	pathReset     = "/fault/reset"     // promises 1 MiB, sends 4 KiB, then a TCP reset
	pathStall     = "/fault/stall"     // promises 1 MiB, sends 4 KiB, then goes silent
	pathMalformed = "/fault/malformed" // answers bytes that are not HTTP
	pathEOF       = "/fault/eof"       // closes without a byte
	pathWSDrop    = "/fault/ws"        // accepts a WebSocket, then resets at the first frame
)

// resetPromised and resetSent are what pathReset promises and sends.
const (
	resetPromised = 1 << 20
	resetSent     = 4 << 10
)

// rawUpstream is a hand-written HTTP/1.1 upstream that misbehaves on
// purpose (see the path constants), counts the requests it parses, and keeps
// the request lines it saw. Its healthy answer is 200 "ok" with
// X-Node: fault.
type rawUpstream struct {
	t    testing.TB
	ln   net.Listener
	Addr string

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	lines   []string // request lines of complete requests, in arrival order
	bodies  []int64  // body sizes of the complete requests
	aborted []string // request lines of requests whose body never ended
	errs    []string // parse errors: bytes that were not a request
	done    chan struct{}
	wg      sync.WaitGroup
}

// startRawUpstream listens on a loopback port until the test ends.
func startRawUpstream(t testing.TB) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("raw upstream: %v", err)
	}
	u := &rawUpstream{t: t, ln: ln, Addr: ln.Addr().String(), conns: make(map[net.Conn]struct{}), done: make(chan struct{})}
	u.wg.Go(u.accept)
	t.Cleanup(u.close)
	return u
}

func (u *rawUpstream) close() {
	close(u.done)
	u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *rawUpstream) accept() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Go(func() {
			defer func() {
				c.Close()
				u.mu.Lock()
				delete(u.conns, c)
				u.mu.Unlock()
			}()
			u.serve(c)
		})
	}
}

// serve parses requests on one connection with net/http's parser, the
// strictest reading of what flowgate forwarded.
func (u *rawUpstream) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !isClosed(err) {
				u.mu.Lock()
				u.errs = append(u.errs, err.Error())
				u.mu.Unlock()
			}
			return
		}
		line := req.Method + " " + req.RequestURI + " " + req.Proto
		n, err := io.Copy(io.Discard, req.Body)
		if err != nil {
			// flowgate gave up on the request mid-body: it is not a request
			// the upstream would act on.
			u.mu.Lock()
			u.aborted = append(u.aborted, line)
			u.mu.Unlock()
			return
		}
		u.mu.Lock()
		u.lines = append(u.lines, line)
		u.bodies = append(u.bodies, n)
		u.mu.Unlock()
		if !u.answer(c, br, req) {
			return
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// answer handles one request and reports whether the connection may carry
// another.
func (u *rawUpstream) answer(c net.Conn, br *bufio.Reader, req *http.Request) bool {
	switch req.URL.Path {
	case pathHang:
		<-u.done // hold the connection open, silent, until the test ends
		return false
	case pathReset:
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nX-Node: fault\r\n\r\n", resetPromised)
		c.Write(make([]byte, resetSent))
		time.Sleep(50 * time.Millisecond) // let the bytes leave before the reset
		reset(c)
		return false
	case pathStall:
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nX-Node: fault\r\n\r\n", resetPromised)
		c.Write(make([]byte, resetSent))
		<-u.done // silent, connection open, until the test ends
		return false
	case pathMalformed:
		io.WriteString(c, "HTTP/1.1 two hundred OK\r\nnot a header line\r\n\r\n")
		return false
	case pathEOF:
		reset(c)
		return false
	case pathWSDrop:
		key := req.Header.Get("Sec-WebSocket-Key")
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		br.ReadByte() // the first byte of the client's first frame
		reset(c)
		return false
	}
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nX-Node: fault\r\n\r\nok\n")
	return !req.Close
}

// reset closes c with a TCP RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// requestLines returns the request lines parsed so far.
func (u *rawUpstream) requestLines() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.lines...)
}

// bodySizes returns the body sizes of the complete requests parsed so far.
func (u *rawUpstream) bodySizes() []int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int64(nil), u.bodies...)
}

// abortedLines returns the request lines of requests whose body never
// ended.
func (u *rawUpstream) abortedLines() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.aborted...)
}

// parseErrors returns what the upstream could not parse as a request.
func (u *rawUpstream) parseErrors() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.errs...)
}

// resetLog forgets the request lines and parse errors seen so far.
func (u *rawUpstream) resetLog() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lines, u.bodies, u.aborted, u.errs = nil, nil, nil, nil
}
