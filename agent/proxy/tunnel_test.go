package proxy

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
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
			n, err := pump(&dst, src.Read, testBufPool())
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
	if _, err := pump(io.Discard, read, testBufPool()); err != nil {
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
			_, err := pump(tc.dst, tc.src.Read, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("pump: got error %v; want %v", err, tc.want)
			}
		})
	}
}

// memUpstream is an in-memory upstream side of a tunnel.
type memUpstream struct {
	src     io.Reader
	written bytes.Buffer
}

func (c *memUpstream) Read(p []byte) (int, error)  { return c.src.Read(p) }
func (c *memUpstream) Write(p []byte) (int, error) { return c.written.Write(p) }
func (c *memUpstream) Close() error                { return nil }

// TestTrackedConnCopies checks that io.Copy, as httputil.ReverseProxy calls
// it, goes through trackedConn's own loops and keeps their meaning: writes
// to the upstream are frame-tracked, and the upstream's end of stream is
// errUpstreamClosed.
func TestTrackedConnCopies(t *testing.T) {
	t.Parallel()
	up := &memUpstream{src: bytes.NewReader([]byte("from upstream"))}
	tc := &trackedConn{ReadWriteCloser: up, bufs: testBufPool(), onClose: func() {}}

	// Client to upstream: one masked text frame "hi".
	frame := []byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}
	// (The wrapper hides bytes.Reader's WriteTo, as a TLS connection has
	// none, so that io.Copy takes trackedConn.ReadFrom.)
	if _, err := io.Copy(tc, struct{ io.Reader }{bytes.NewReader(frame)}); err != nil {
		t.Fatalf("io.Copy to the upstream: %v", err)
	}
	if !bytes.Equal(up.written.Bytes(), frame) {
		t.Fatalf("upstream got %q; want %q", up.written.Bytes(), frame)
	}
	if !tc.frames.atBoundary() {
		t.Fatalf("frame tracker: got mid-frame after a whole frame; want at a boundary")
	}

	// Upstream to client: the end of stream is an error that ends the tunnel.
	var client bytes.Buffer
	_, err := io.Copy(&client, tc)
	if !errors.Is(err, errUpstreamClosed) {
		t.Fatalf("io.Copy from the upstream: got error %v; want %v", err, errUpstreamClosed)
	}
	if client.String() != "from upstream" {
		t.Fatalf("client got %q; want %q", client.String(), "from upstream")
	}
}
