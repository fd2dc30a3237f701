package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// wsConn is the client side of a WebSocket through a proxy.
type wsConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	mask [4]byte
	out  []byte // scratch for the masked copy of a message
	in   []byte // scratch for the echo
}

// dialWS opens a WebSocket to path over TLS (HTTP/1.1) and checks the
// handshake answer.
func dialWS(ctx context.Context, addr, path string) (*wsConn, error) {
	d := tls.Dialer{Config: clientTLS(nil)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	w := &wsConn{c: c, br: bufio.NewReaderSize(c, 2<<10), bw: bufio.NewWriterSize(c, 2<<10)}
	rand.Read(w.mask[:])
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(w.bw, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, key)
	if err := w.bw.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != websocketAccept(key) {
		c.Close()
		return nil, fmt.Errorf("websocket handshake: status %d, accept %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	c.SetDeadline(time.Time{})
	return w, nil
}

var errEchoMismatch = errors.New("websocket echo differs from the message sent")

// roundTrip sends msg as one binary frame and waits for its echo.
func (w *wsConn) roundTrip(msg []byte) error {
	w.c.SetDeadline(time.Now().Add(10 * time.Second))
	w.out = append(w.out[:0], msg...)
	if err := writeFrame(w.bw, 0x80|opBinary, w.out, &w.mask); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	f, buf, err := readFrame(w.br, w.in)
	w.in = buf
	if err != nil {
		return err
	}
	if f.opcode() != opBinary || !bytes.Equal(f.payload, msg) {
		return errEchoMismatch
	}
	return nil
}

func (w *wsConn) close() { w.c.Close() }

// runWSEcho opens conns WebSockets, then has each send size-byte messages
// and wait for the echo, back to back, for d.
func runWSEcho(ctx context.Context, addr string, conns, size int, d time.Duration) (loadResult, error) {
	ws, err := openWebSockets(ctx, addr, conns, 16)
	if err != nil {
		return loadResult{}, err
	}
	defer closeAll(ws)
	msg := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	return closedLoop(ctx, conns, d, func(_ context.Context, i int) (bool, string) {
		if err := ws[i].roundTrip(msg); err != nil {
			return false, err.Error()
		}
		return true, ""
	}), nil
}

// openWebSockets opens n WebSockets, parallel at a time, each proven by one
// echo round trip. On any failure it closes what it opened.
func openWebSockets(ctx context.Context, addr string, n, parallel int) ([]*wsConn, error) {
	ws := make([]*wsConn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	msg := []byte("hello")
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			w, err := dialWS(ctx, addr, "/ws")
			if err == nil {
				if err = w.roundTrip(msg); err != nil {
					w.close()
				}
			}
			if err != nil {
				errs[i] = err
				return
			}
			ws[i] = w
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		failed := 0
		for _, e := range errs {
			if e != nil {
				failed++
			}
		}
		closeAll(ws)
		return nil, fmt.Errorf("%d of %d websockets failed, first: %w", failed, n, firstErr(errs))
	}
	return ws, nil
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func closeAll(ws []*wsConn) {
	for _, w := range ws {
		if w != nil {
			w.close()
		}
	}
}

// runWSHold opens idle WebSockets through a proxy and holds them until the
// hold time passes or it is interrupted: for profiling a proxy by hand.
func runWSHold(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("flowbench ws-hold", flag.ContinueOnError)
	addr := fs.String("addr", "", "proxy `HOST:PORT` (TLS)")
	n := fs.Int("conns", 1000, "WebSockets to open")
	hold := fs.Duration("hold", time.Minute, "how long to hold them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		return errors.New("--addr is required")
	}
	start := time.Now()
	ws, err := openWebSockets(ctx, *addr, *n, 32)
	if err != nil {
		return err
	}
	defer closeAll(ws)
	fmt.Fprintf(stdout, "holding %d websockets (opened in %v)\n", *n, time.Since(start).Round(time.Millisecond))
	select {
	case <-ctx.Done():
	case <-time.After(*hold):
	}
	return nil
}
