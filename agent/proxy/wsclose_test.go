package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/flowgate/flowgate/discovery"
)

// frame builds a client frame with the given payload length (masked).
func frame(n int) []byte {
	var b bytes.Buffer
	b.WriteByte(0x82)
	switch {
	case n < 126:
		b.WriteByte(0x80 | byte(n))
	case n < 1<<16:
		b.WriteByte(0x80 | 126)
		binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(0x80 | 127)
		binary.Write(&b, binary.BigEndian, uint64(n))
	}
	b.Write([]byte{1, 2, 3, 4})
	b.Write(make([]byte, n))
	return b.Bytes()
}

func TestFrameTrackerBoundaries(t *testing.T) {
	stream := bytes.Join([][]byte{frame(5), frame(300), frame(70000), frame(0)}, nil)
	// Boundaries fall after each frame; feed the stream in every chunk size
	// from 1 byte up and check atBoundary only at those offsets.
	ends := map[int]bool{}
	off := 0
	for _, n := range []int{5, 300, 70000, 0} {
		off += len(frame(n))
		ends[off] = true
	}
	for _, chunk := range []int{1, 3, 7, 100, 4096, len(stream)} {
		var f frameTracker
		for i := 0; i < len(stream); i += chunk {
			j := min(i+chunk, len(stream))
			f.feed(stream[i:j])
			want := ends[j]
			if got := f.atBoundary(); got != want && (chunk == 1 || want) {
				t.Fatalf("chunk %d, offset %d: atBoundary() = %v; want %v", chunk, j, got, want)
			}
		}
		if !f.atBoundary() {
			t.Fatalf("chunk %d: not at a boundary after the whole stream", chunk)
		}
	}
}

func TestShutdownClosesWebSocketsCleanly(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	defer backend.Close()
	p := New(Options{})
	p.SetUpstreams([]discovery.Upstream{{Addr: strings.TrimPrefix(backend.URL, "http://"), Weight: 1}})
	front := httptest.NewServer(p)
	defer front.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(front.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello" {
		t.Fatalf("echo = %q, %v; want hello", msg, err)
	}
	if got := p.WebSockets(); got != 1 {
		t.Fatalf("WebSockets() = %d; want 1", got)
	}

	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	defer scancel()
	start := time.Now()
	p.Shutdown(sctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v; the close handshake should be quick", d)
	}
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
		t.Fatalf("client read after shutdown: %v; want a close frame with status 1001", err)
	}
	if got := p.WebSockets(); got != 0 {
		t.Errorf("WebSockets() after Shutdown = %d; want 0", got)
	}
}
