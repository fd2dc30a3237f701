//go:build unix

package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pollPair returns a loopback connection's dialled end wrapped in a
// pollConn, and its other end, the upstream.
func pollPair(t *testing.T) (pc *pollConn, up net.Conn) {
	t.Helper()
	client, server := tcpPair(t)
	pc, ok := newPollConn(client).(*pollConn)
	if !ok {
		t.Fatalf("newPollConn(%T) did not wrap the TCP connection", client)
	}
	return pc, server
}

// nothingArrives fails the test when c receives anything within 50 ms.
func nothingArrives(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	if n, err := c.Read(make([]byte, 64)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: upstream got %d bytes, %v; want nothing", what, n, err)
	}
}

// readN reads exactly n bytes from c within 5 s.
func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("upstream reading %d bytes: %v", n, err)
	}
	return b
}

// Held writes go out with the next read, in order, and that read then
// waits for the answer without a read(2) that finds nothing.
func TestPollConnSendsWithinRead(t *testing.T) {
	pc, up := pollPair(t)
	for i := range 3 {
		pc.hold(i > 0)
		pc.Write([]byte("GET / HTTP/1.1\r\n"))
		pc.Write([]byte("Host: x\r\n\r\n"))
		nothingArrives(t, up, "before the read")

		before := pc.syscalls
		got := make(chan string, 1)
		go func() {
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 64)
			n, err := pc.Read(b)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(b[:n])
		}()
		if req := readN(t, up, 27); string(req) != "GET / HTTP/1.1\r\nHost: x\r\n\r\n" {
			t.Fatalf("round %d: upstream got %q", i, req)
		}
		time.Sleep(20 * time.Millisecond) // the read waits
		up.Write([]byte("answer"))
		if s := <-got; s != "answer" {
			t.Fatalf("round %d: read %q; want answer", i, s)
		}
		if n := pc.syscalls - before; n != 1 {
			t.Errorf("round %d: %d read calls for the answer; want 1 (none told EAGAIN)", i, n)
		}
	}
	// Not holding, reads and writes go straight through.
	pc.Write([]byte("plain"))
	if got := readN(t, up, 5); string(got) != "plain" {
		t.Fatalf("plain write: upstream got %q", got)
	}
	up.Write([]byte("back"))
	if got := readN(t, pc, 4); string(got) != "back" {
		t.Fatalf("plain read %q; want back", got)
	}
}

// What is held but does not fit the socket at once still goes out whole,
// and the answer is read after it.
func TestPollConnSendsLargeHeldWrite(t *testing.T) {
	pc, up := pollPair(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB, more than a socket takes
	pc.hold(true)
	pc.Write(big)
	done := make(chan error, 1)
	go func() {
		got := readN(t, up, len(big))
		if !bytes.Equal(got, big) {
			done <- errors.New("upstream got other bytes than were written")
			return
		}
		_, err := up.Write([]byte("ok"))
		done <- err
	}()
	if got := readN(t, pc, 2); string(got) != "ok" {
		t.Fatalf("read %q; want ok", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// heldRequest holds a request on pc, with or without the check, and
// returns what the read that sends it fails with.
func heldRequest(pc *pollConn, check bool) error {
	pc.hold(check)
	pc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := pc.Read(make([]byte, 64))
	return err
}

// The check before a held request finds what the upstream did while the
// connection was idle, and nothing is sent.
func TestPollConnCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		do   func(up net.Conn)
	}{
		{"stray bytes", func(up net.Conn) { up.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n")) }},
		{"close", func(up net.Conn) { up.Close() }},
		{"reset", func(up net.Conn) { up.(*net.TCPConn).SetLinger(0); up.Close() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pc, up := pollPair(t)
			tt.do(up)
			time.Sleep(20 * time.Millisecond)
			err := heldRequest(pc, true)
			var held *heldWriteError
			if !errors.As(err, &held) || !errors.Is(err, errIdleConnUnusable) {
				t.Fatalf("read after the upstream's %s: %v; want the check's heldWriteError", tt.name, err)
			}
			if tt.name == "stray bytes" {
				nothingArrives(t, up, "after a failed check")
			}
		})
	}
}

// Without the check, a held request to an upstream that reset the
// connection fails as a write, a heldWriteError: the request was not
// sent.
func TestPollConnHeldWriteFails(t *testing.T) {
	pc, up := pollPair(t)
	up.(*net.TCPConn).SetLinger(0)
	up.Close()
	time.Sleep(20 * time.Millisecond)
	err := heldRequest(pc, false)
	var held *heldWriteError
	var oe *net.OpError
	if !errors.As(err, &held) || !errors.As(err, &oe) || oe.Op != "write" ||
		!(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("held write to a reset connection: %v; want a heldWriteError for EPIPE or ECONNRESET", err)
	}
}

// A read whose deadline has passed sends nothing and fails as net's read
// does; so does one that waits past its deadline after sending.
func TestPollConnDeadlines(t *testing.T) {
	pc, up := pollPair(t)
	pc.hold(true)
	pc.Write([]byte("unsent"))
	pc.SetReadDeadline(time.Unix(1, 0))
	_, err := pc.Read(make([]byte, 64))
	var held *heldWriteError
	if !errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &held) {
		t.Fatalf("read past its deadline: %v; want a timeout, not a write failure", err)
	}
	checkReadOpError(t, err)
	nothingArrives(t, up, "after a read past its deadline")

	pc.hold(true)
	pc.Write([]byte("sent"))
	pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = pc.Read(make([]byte, 64))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with no answer: %v; want a timeout", err)
	}
	checkReadOpError(t, err)
	if got := readN(t, up, 4); string(got) != "sent" {
		t.Fatalf("upstream got %q; want sent", got)
	}

	up.Close()
	pc.hold(true)
	pc.Write([]byte("x"))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := pc.Read(make([]byte, 8)); !errors.As(err, &held) {
		t.Fatalf("held read after the upstream closed: %v; want the check's failure", err)
	}
	// The failure sticks: a parser that reads again must not see the
	// upstream's EOF, as if the request had gone out.
	for range 2 {
		if n, err := pc.Read(make([]byte, 8)); n != 0 || !errors.As(err, &held) {
			t.Fatalf("read after the failed check: %d, %v; want the same failure", n, err)
		}
	}
}

func checkReadOpError(t *testing.T, err error) {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || oe.Net != "tcp" || oe.Addr == nil || oe.Source == nil ||
		strings.Contains(err.Error(), "raw-read") {
		t.Errorf("error %#v; want a *net.OpError for a tcp read with both addresses", err)
	}
}

// Only a TCP connection is wrapped.
func TestNewPollConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := newPollConn(a); got != a {
		t.Errorf("newPollConn(pipe) = %T; want the pipe itself", got)
	}
}
