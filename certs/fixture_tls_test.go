package certs

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixtureServer is a real TLS server on loopback. After a successful
// handshake it writes one byte, so a client learns of a rejected client
// certificate (which TLS 1.3 reports only after the client's handshake).
type fixtureServer struct {
	addr string
}

// startFixtureServer serves TLS with the config returned by cfg for every
// connection, until the test ends.
func startFixtureServer(t testing.TB, cfg func() *tls.Config) *fixtureServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			wg.Go(func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(conn, cfg())
				if tc.Handshake() == nil {
					_, _ = tc.Write([]byte("k"))
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return &fixtureServer{addr: ln.Addr().String()}
}

// filesServerConfig serves f's certificates and, when f has a client CA,
// requires client certificates signed by its current bundle.
func filesServerConfig(f *Files) func() *tls.Config {
	return func() *tls.Config {
		cfg := &tls.Config{GetCertificate: f.GetCertificate}
		if pool := f.ClientCAs(); pool != nil {
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return cfg
	}
}

// handshake connects with serverName as SNI (empty sends none), presenting
// client when not nil, and returns the serial of the served leaf.
func (s *fixtureServer) handshake(t testing.TB, serverName string, client *tls.Certificate) (string, error) {
	t.Helper()
	cfg := &tls.Config{
		// The tests compare serials; chain verification has its own test.
		InsecureSkipVerify: true,
		ServerName:         serverName,
	}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", s.addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err != nil {
		return "", err
	}
	return SerialHex(conn.ConnectionState().PeerCertificates[0]), nil
}

// served is handshake for tests that expect success.
func (s *fixtureServer) served(t testing.TB, serverName string) string {
	t.Helper()
	serial, err := s.handshake(t, serverName, nil)
	if err != nil {
		t.Fatalf("handshake with SNI %q: %v", serverName, err)
	}
	return serial
}

// fixtureWait polls cond until it reports true, failing the test after a
// deadline with cond's last description of what it saw.
func fixtureWait(t testing.TB, want string, cond func() (ok bool, got string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, got := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: got %s; want %s", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fixtureLog collects slog text output safely across goroutines.
type fixtureLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *fixtureLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *fixtureLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count reports how many log lines contain s.
func (b *fixtureLog) count(s string) int {
	n := 0
	for line := range strings.Lines(b.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}
