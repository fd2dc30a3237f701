package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startTestUpstream serves the stand-in upstream on loopback until the test
// ends.
func startTestUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newUpstreamServer("up").serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("upstream: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestUpstreamBytes(t *testing.T) {
	addr := startTestUpstream(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for _, tc := range []struct {
		query   string
		n       int
		chunked bool
	}{
		{"n=1024", 1024, false},
		{"n=0", 0, false},
		{"n=102400&chunked=1", 102400, true},
		{"n=100&chunked=1", 100, true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp, err := c.Get("http://" + addr + "/bytes?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
			if resp.StatusCode != 200 || len(body) != tc.n || chunked != tc.chunked {
				t.Fatalf("got %d, %d bytes, chunked %v; want 200, %d bytes, chunked %v", resp.StatusCode, len(body), chunked, tc.n, tc.chunked)
			}
			if !tc.chunked && resp.ContentLength != int64(tc.n) {
				t.Errorf("Content-Length: got %d; want %d", resp.ContentLength, tc.n)
			}
			if tc.n > 26 && string(body[:3]) != "abc" {
				t.Errorf("body starts %q; want the pattern abc...", body[:3])
			}
		})
	}
	resp, err := c.Get("http://" + addr + "/bytes?n=zzz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("/bytes?n=zzz: got %d; want 400", resp.StatusCode)
	}
}

// TestUpstreamPipelinedAndHeaders sends two requests in one write: both
// must be answered in order on the same connection, the second echoing its
// headers.
func TestUpstreamPipelinedAndHeaders(t *testing.T) {
	addr := startTestUpstream(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /bytes?n=5 HTTP/1.1\r\nHost: a\r\n\r\n"+
		"GET /tls/headers HTTP/1.1\r\nHost: b\r\nX-Forwarded-For: 192.0.2.1\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(conn)
	for i, want := range []string{"abcde", "X-Forwarded-For: 192.0.2.1"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), want) {
			t.Errorf("response %d: got %q; want it to contain %q", i, body, want)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close: got %v; want EOF", err)
	}
}

func TestUpstreamWebSocketEcho(t *testing.T) {
	addr := startTestUpstream(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 6455's example key and answer.
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: got %d, accept %q; want 101, s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	bw := bufio.NewWriter(conn)
	mask := [4]byte{9, 8, 7, 6}
	for _, size := range []int{5, 200, 70000} {
		msg := bytes.Repeat([]byte("q"), size)
		if err := writeFrame(bw, 0x80|opBinary, bytes.Clone(msg), &mask); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		f, _, err := readFrame(br, nil)
		if err != nil {
			t.Fatalf("echo of %d bytes: %v", size, err)
		}
		if f.opcode() != opBinary || !bytes.Equal(f.payload, msg) {
			t.Fatalf("echo of %d bytes: got opcode %d, %d bytes; want binary, the same bytes", size, f.opcode(), len(f.payload))
		}
	}
	writeFrame(bw, 0x80|opClose, []byte{3, 232}, &mask)
	bw.Flush()
	f, _, err := readFrame(br, nil)
	if err != nil || f.opcode() != opClose {
		t.Fatalf("close: got opcode %d, %v; want a close frame", f.opcode(), err)
	}
}

// TestUpstreamNodesInOneProcess: `flowbench upstream` serves a node per
// address, each answering with its own name, and refuses a list of names
// that does not match the addresses.
func TestUpstreamNodesInOneProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runUpstream(ctx, []string{"--addr", "127.0.0.1:0,127.0.0.1:0", "--name", "n0,n1"}, pw)
		pw.Close()
	}()
	br := bufio.NewReader(pr)
	tr := &http.Transport{}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i, want := range []string{"n0", "n1"} {
		line, err := br.ReadString('\n')
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), upstreamListening)
		if err != nil || !ok {
			t.Fatalf("node %d: got %q, %v; want its address", i, line, err)
		}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Node"); got != want {
			t.Errorf("node %d: X-Node %q; want %q", i, got, want)
		}
	}
	tr.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("upstream: %v", err)
	}

	err := runUpstream(context.Background(), []string{"--addr", "127.0.0.1:0,127.0.0.1:0", "--name", "one"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "one name per address") {
		t.Errorf("two addresses, one name: got %v; want an error", err)
	}
}
