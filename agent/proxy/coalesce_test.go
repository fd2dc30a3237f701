package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Everything written arrives, in order, and Close sends what is queued
// before the socket closes.
func TestCoalescingConnDeliversInOrder(t *testing.T) {
	client, server := tcpPair(t)
	c := newCoalescingConn(server)
	c.coalesce()
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	for i := range 5000 {
		p := []byte("frame " + strconv.Itoa(i) + ";")
		if i%500 == 0 {
			p = bytes.Repeat([]byte{byte('a' + i%26)}, 40<<10) // over the limit in two writes
		}
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("received %d bytes, not the %d written in order", len(b), want.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the socket was not closed after the queue was sent")
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v; want net.ErrClosed", err)
	}
}

// Before coalesce a write goes straight to the socket: nothing is queued
// and no goroutine sends it.
func TestCoalescingConnPassesThroughUntilCoalescing(t *testing.T) {
	client, server := tcpPair(t)
	c := newCoalescingConn(server)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	queued, sending := c.queue != nil, c.sending
	c.mu.Unlock()
	if queued || sending {
		t.Fatalf("a write before coalesce was queued (%v) or handed to a sender (%v)", queued, sending)
	}
	b := make([]byte, 5)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, b); err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// A client that reads nothing holds writes back once coalesceLimit bytes
// wait; Close does not wait for it, and releases the blocked writer.
func TestCoalescingConnBackpressureAndClose(t *testing.T) {
	_, server := tcpPair(t)
	c := newCoalescingConn(server)
	c.coalesce()
	chunk := make([]byte, 16<<10)
	blocked := make(chan error, 1)
	go func() {
		for {
			if _, err := c.Write(chunk); err != nil {
				blocked <- err
				return
			}
		}
	}()
	// The socket's buffers fill, then the queue: the writer must block.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		full := c.queued() >= coalesceLimit
		c.mu.Unlock()
		if full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the queue never filled against a client that reads nothing")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-blocked:
		t.Fatalf("the writer did not block on a full queue: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.mu.Lock()
	queued := c.queued()
	c.mu.Unlock()
	if queued >= coalesceLimit+len(chunk) {
		t.Fatalf("%d bytes queued; want fewer than %d", queued, coalesceLimit+len(chunk))
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a client that reads nothing", d)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked writer: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the blocked writer")
	}
}

// A failed send is returned by a later Write.
func TestCoalescingConnReportsSendFailure(t *testing.T) {
	client, server := tcpPair(t)
	c := newCoalescingConn(server)
	c.coalesce()
	client.(*net.TCPConn).SetLinger(0)
	client.Close() // a reset: sends then fail
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Write(make([]byte, 1024)); err != nil {
			if errors.Is(err, net.ErrClosed) {
				t.Fatalf("got %v; want the socket's error", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a reset connection never failed")
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
}
