package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// chunkReader returns its data in reads of at most chunk bytes, recording
// the size of every buffer it was given, then err (io.EOF when nil).
type chunkReader struct {
	data  []byte
	chunk int
	err   error
	sizes []int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	r.sizes = append(r.sizes, len(p))
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// readerFunc is an io.Reader of a function.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func testBufPool() *sync.Pool {
	return &sync.Pool{New: func() any { return new(copyBuf) }}
}

func TestPumpCopiesEverything(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		size  int
		chunk int
	}{
		{"empty", 0, 1},
		{"one byte", 1, 1},
		{"just under the small buffer", tunnelSmallBuf - 1, 16 << 10},
		{"exactly the small buffer", tunnelSmallBuf, 16 << 10},
		{"TLS records of 16 KiB", 1 << 20, 16 << 10},
		{"odd chunks", 100<<10 + 7, 3001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			var dst bytes.Buffer
			src := &chunkReader{data: bytes.Clone(data), chunk: tc.chunk}
			n, err := pump(&dst, src, testBufPool(), nil, 0, nil)
			if err != nil {
				t.Fatalf("pump: got error %v; want nil at EOF", err)
			}
			if n != int64(tc.size) || !bytes.Equal(dst.Bytes(), data) {
				t.Fatalf("pump: got %d bytes (equal %v); want the %d bytes sent", n, bytes.Equal(dst.Bytes(), data), tc.size)
			}
		})
	}
}

// TestPumpWaitsWithTheSmallBuffer checks the buffer sizes pump reads with:
// small while idle, 32 KiB while a burst fills the small one, small again
// once the burst is over. An idle tunnel must not hold a 32 KiB buffer.
func TestPumpWaitsWithTheSmallBuffer(t *testing.T) {
	t.Parallel()
	const big = 32 << 10
	// A 1 KiB message, a 64 KiB burst read in 16 KiB records, then a
	// 100-byte message. The reader answers each read with at most chunk.
	var script [][]byte
	script = append(script, make([]byte, 1024))
	for range 4 {
		script = append(script, make([]byte, 16<<10))
	}
	script = append(script, make([]byte, 100))
	var sizes []int
	i := 0
	read := func(p []byte) (int, error) {
		sizes = append(sizes, len(p))
		if i == len(script) {
			return 0, io.EOF
		}
		n := copy(p, script[i])
		script[i] = script[i][n:]
		if len(script[i]) == 0 {
			i++
		}
		return n, nil
	}
	if _, err := pump(io.Discard, readerFunc(read), testBufPool(), nil, 0, nil); err != nil {
		t.Fatalf("pump: %v", err)
	}
	want := []int{
		tunnelSmallBuf,     // the 1 KiB message
		tunnelSmallBuf,     // the first 2 KiB of the first record fill it
		big, big, big, big, // the rest of the burst, record by record
		big,            // the 100-byte message: less than the small buffer
		tunnelSmallBuf, // waits small again (here: EOF)
	}
	if !slicesEqual(sizes, want) {
		t.Fatalf("read buffer sizes: got %v; want %v", sizes, want)
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

type failWriter struct{ err error }

func (w failWriter) Write(p []byte) (int, error) { return 0, w.err }

func TestPumpErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		dst  io.Writer
		src  *chunkReader
		want error
	}{
		{"read error is returned", io.Discard, &chunkReader{data: []byte("abc"), chunk: 2, err: boom}, boom},
		{"write error is returned", failWriter{boom}, &chunkReader{data: []byte("abc"), chunk: 2}, boom},
		{"short write", shortWriter{}, &chunkReader{data: []byte("abcd"), chunk: 4}, io.ErrShortWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pump(tc.dst, tc.src, nil, nil, 0, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("pump: got error %v; want %v", err, tc.want)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger on another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestTunnelFinishesRequestWhenSocketEnds checks that the handler returns
// while the WebSocket stays open (so that the server connection's buffers
// and the handler's stack are freed), and that the request is still
// accounted as before: in flight while the socket is open, and logged and
// counted with status 101 once it ends.
func TestTunnelFinishesRequestWhenSocketEnds(t *testing.T) {
	a := newWSBackend(t, "a")
	var logs lockedBuffer
	m := NewMetrics(nil)
	p := newTestProxy(t, Options{Metrics: m, AccessLog: slog.New(slog.NewJSONHandler(&logs, nil))}, a.upstream())
	var returned atomic.Int64
	url, client := front(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r)
		returned.Add(1)
	}))
	c := dialWS(t, url, client)
	if got, err := echo(c, "hello"); err != nil || got != "a:hello" {
		t.Fatalf("echo: got %q, %v; want %q", got, err, "a:hello")
	}
	eventually(t, "the handler returns while the socket is open", func() bool { return returned.Load() == 1 })
	if got := gaugeValue(t, m.inflight); got != 1 {
		t.Errorf("flowgate_requests_in_flight with the socket open: got %v; want 1", got)
	}
	if got := logs.String(); got != "" {
		t.Errorf("access log with the socket open: got %q; want nothing yet", got)
	}
	if got, err := echo(c, "again"); err != nil || got != "a:again" {
		t.Fatalf("echo after the handler returned: got %q, %v; want %q", got, err, "a:again")
	}
	c.Close(websocket.StatusNormalClosure, "bye")
	eventually(t, "the access log records the socket", func() bool { return strings.Contains(logs.String(), `"status":101`) })
	eventually(t, "the in-flight gauge drops", func() bool { return gaugeValue(t, m.inflight) == 0 })
	key := a.upstream().Key()
	if got := gaugeValue(t, m.requests.WithLabelValues(key, "101", "GET")); got != 1 {
		t.Errorf("flowgate_requests_total{code=101}: got %v; want 1", got)
	}
	eventually(t, "the proxy forgets the socket", func() bool { return p.WebSockets() == 0 })
}

// TestTunnelForwardsEarlyClientBytes sends a WebSocket frame in the same
// write as the upgrade request: the server has buffered it by the time the
// connection is taken over, and it must still reach the upstream.
func TestTunnelForwardsEarlyClientBytes(t *testing.T) {
	a := newWSBackend(t, "a")
	p := newTestProxy(t, Options{}, a.upstream())
	url, _ := front(t, p)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | 5, mask[0], mask[1], mask[2], mask[3]}
	for i, c := range []byte("early") {
		frame = append(frame, c^mask[i%4])
	}
	req := "GET /ws HTTP/1.1\r\nHost: flowgate.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: got %v, %v; want 101", resp, err)
	}
	want := "a:early"
	got := make([]byte, 2+len(want))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("reading the echo of the early frame: %v", err)
	}
	if got[0] != 0x81 || int(got[1]) != len(want) || string(got[2:]) != want {
		t.Fatalf("echo frame: got %q; want a text frame %q", got, want)
	}
}

// TestTunnelRejectsAnotherProtocol: an upstream that switches to a protocol
// the client did not ask for gets no tunnel; the client gets a 502.
func TestTunnelRejectsAnotherProtocol(t *testing.T) {
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: something-else\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(io.Discard, conn) // until the proxy closes
	})
	p := newTestProxy(t, Options{}, b.upstream())
	url, client := front(t, p)
	code, _, _ := get(t, client, url+"/ws", map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
	})
	if code != http.StatusBadGateway {
		t.Fatalf("status: got %d; want 502", code)
	}
	eventually(t, "the proxy closes the upstream connection", func() bool { return p.WebSockets() == 0 })
}

// TestPumpReturnsWhenQuiet checks the quiet period on a real deadline: data
// in every period keeps the pump copying; a whole period without any ends
// it with errQuiet and the read deadline cleared.
func TestPumpReturnsWhenQuiet(t *testing.T) {
	t.Parallel()
	const period = 200 * time.Millisecond
	src, w := net.Pipe()
	defer src.Close()
	defer w.Close()
	go func() {
		w.Write([]byte("a"))
		time.Sleep(period * 3 / 2) // in the middle of the second period
		w.Write([]byte("b"))
	}()
	var dst bytes.Buffer
	start := time.Now()
	n, err := pump(&dst, src, testBufPool(), src, period, nil)
	if err != errQuiet {
		t.Fatalf("pump: got error %v; want errQuiet", err)
	}
	if n != 2 || dst.String() != "ab" {
		t.Fatalf("pump copied %d bytes %q; want 2 bytes \"ab\"", n, dst.String())
	}
	// "b" came in the second period, so only the third was quiet.
	if took := time.Since(start); took < 2*period {
		t.Errorf("pump returned after %v; want at least two periods (%v)", took, 2*period)
	}
	// The deadline is gone: a read waits for data again.
	go func() {
		time.Sleep(2 * period)
		w.Write([]byte("c"))
	}()
	b := make([]byte, 1)
	if _, err := src.Read(b); err != nil || b[0] != 'c' {
		t.Fatalf("read after pump: got %q, %v; want \"c\" with no deadline left", b, err)
	}
}

// tunnelGoroutines counts the goroutines of tunnel directions: those
// waiting idle on a socket and those copying.
func tunnelGoroutines() (idle, copying int) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "proxy.pump("):
			copying++
		case strings.Contains(g, "proxy.(*direction).idle("):
			idle++
		}
	}
	return idle, copying
}

// TestIdleTunnelHoldsNoBuffer: once a WebSocket has been quiet for a while,
// both directions wait on their sockets (no buffer, the smallest stack),
// even after a burst that borrowed a pooled buffer; a message wakes them.
func TestIdleTunnelHoldsNoBuffer(t *testing.T) {
	a := newWSBackend(t, "a")
	p := newTestProxy(t, Options{}, a.upstream())
	url, client := frontTLS(t, p)
	c := dialWS(t, url, client)
	bothIdle := func() bool { idle, copying := tunnelGoroutines(); return idle == 2 && copying == 0 }
	for _, msg := range []string{strings.Repeat("x", 200<<10), "hello"} {
		if got, err := echo(c, msg); err != nil || got != "a:"+msg {
			t.Fatalf("echo: got %.20q, %v; want %.20q", got, err, "a:"+msg)
		}
		eventually(t, "both directions wait idle, with no buffer", bothIdle)
	}
}

// splitConn writes, once armed, each write in two halves, calling between
// in the pause.
type splitConn struct {
	net.Conn
	armed   atomic.Bool
	between func()
}

func (c *splitConn) Write(p []byte) (int, error) {
	if !c.armed.Load() || len(p) < 2 {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	c.between()
	m, err := c.Conn.Write(p[len(p)/2:])
	return n + m, err
}

// TestTunnelIdlesInsideATLSRecord: a client that stops in the middle of a
// TLS record leaves half of it in the tls.Conn when the direction goes
// idle; the rest, once it comes, completes the record and the message
// reaches the upstream.
func TestTunnelIdlesInsideATLSRecord(t *testing.T) {
	a := newWSBackend(t, "a")
	p := newTestProxy(t, Options{}, a.upstream())
	url, client := frontTLS(t, p)
	raw, err := net.Dial("tcp", strings.TrimPrefix(url, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	sc := &splitConn{Conn: raw, between: func() {
		// The first half wakes the direction to the upstream, which then
		// waits a quiet period for the rest and goes idle again.
		eventually(t, "the first half of the record wakes a direction", func() bool {
			_, copying := tunnelGoroutines()
			return copying == 1
		})
		eventually(t, "both directions idle with half a record sent", func() bool {
			idle, copying := tunnelGoroutines()
			return idle == 2 && copying == 0
		})
	}}
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.ServerName = "example.com" // in httptest's certificate
	conn := tls.Client(sc, cfg)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: flowgate.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: got %v, %v; want 101", resp, err)
	}
	mask := [4]byte{9, 8, 7, 6}
	msg := strings.Repeat("split ", 50)
	frame := []byte{0x81, 0x80 | 126, byte(len(msg) >> 8), byte(len(msg)), mask[0], mask[1], mask[2], mask[3]}
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	sc.armed.Store(true)
	if _, err := conn.Write(frame); err != nil { // one record, sent in two halves
		t.Fatal(err)
	}
	sc.armed.Store(false)
	want := "a:" + msg
	got := make([]byte, 4+len(want))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if got[0] != 0x81 || got[1] != 126 || int(got[2])<<8|int(got[3]) != len(want) || string(got[4:]) != want {
		t.Fatalf("echo frame: got %.40q; want a text frame %.40q", got, want)
	}
}

// TestTunnelForwardsEarlyUpstreamBytes: an upstream that sends a message in
// the same packet as its 101 (after an informational 103) gets it to the
// client.
func TestTunnelForwardsEarlyUpstreamBytes(t *testing.T) {
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		brw.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n" +
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n" +
			"\x81\x08greeting")
		brw.Flush()
		io.Copy(io.Discard, conn) // until the proxy closes
	})
	p := newTestProxy(t, Options{}, b.upstream())
	url, client := frontTLS(t, p)
	c := dialWS(t, url, client)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != "greeting" {
		t.Fatalf("first message: got %q, %v; want %q", got, err, "greeting")
	}
}
