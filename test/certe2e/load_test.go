package certe2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// handshake records one new TLS connection of a load run.
type handshake struct {
	start, end time.Time // around the TCP connect and the handshake
	serial     string    // the leaf's serial in hex; empty when err is set
	notAfter   time.Time // the leaf's NotAfter
	request    bool      // an HTTP request was sent on the connection
	err        error     // a failed handshake or request
}

// loadOptions configure runLoad.
type loadOptions struct {
	// addr is flowgate's HTTPS listener.
	addr string
	// serverName is sent as SNI and verified against the leaf.
	serverName string
	// roots verify the served chain; every handshake verifies it.
	roots *x509.CertPool
	// workers dial concurrently; rate is the target of handshakes per
	// second of all workers together.
	workers int
	rate    float64
	// requestEvery: each worker sends one GET path on every requestEvery-th
	// connection it opens (Connection: close). Zero sends none.
	requestEvery int
	path         string
}

// loadResult is what a load run saw.
type loadResult struct {
	handshakes []handshake // ordered by end
	leaves     map[string]*x509.Certificate
	elapsed    time.Duration
}

// failures returns the failed handshakes and requests.
func (r loadResult) failures() []handshake {
	var out []handshake
	for _, h := range r.handshakes {
		if h.err != nil {
			out = append(out, h)
		}
	}
	return out
}

// rate is the achieved number of handshakes per second.
func (r loadResult) rate() float64 {
	return float64(len(r.handshakes)) / r.elapsed.Seconds()
}

// requests counts the handshakes that carried an HTTP request.
func (r loadResult) requests() int {
	n := 0
	for _, h := range r.handshakes {
		if h.request {
			n++
		}
	}
	return n
}

// servedAfter returns the end of the first handshake that got a serial of
// generation gen or newer, and whether there was one. A write followed at
// once by another may be served only as the newer one: flowgate debounces
// bursts of changes.
func (r loadResult) servedAfter(gen int, generation map[string]int) (time.Time, bool) {
	for _, h := range r.handshakes { // ordered by end
		if g, ok := generation[h.serial]; h.err == nil && ok && g >= gen {
			return h.end, true
		}
	}
	return time.Time{}, false
}

// firstSeen returns, per serial, the end of the first handshake that got it.
func (r loadResult) firstSeen() map[string]time.Time {
	out := make(map[string]time.Time)
	for _, h := range r.handshakes {
		if h.err != nil {
			continue
		}
		if t, ok := out[h.serial]; !ok || h.end.Before(t) {
			out[h.serial] = h.end
		}
	}
	return out
}

// runLoad opens new TLS connections (full handshakes: no session cache, no
// tickets) until ctx is done, paced to o.rate, and returns every outcome.
// A dial that has started finishes even after ctx is done, so the last
// records are complete.
func runLoad(ctx context.Context, o loadOptions) loadResult {
	var (
		mu     sync.Mutex
		all    []handshake
		leaves = make(map[string]*x509.Certificate)
		wg     sync.WaitGroup
	)
	interval := time.Duration(float64(o.workers) / o.rate * float64(time.Second))
	start := time.Now()
	for w := range o.workers {
		wg.Go(func() {
			var mine []handshake
			seen := make(map[string]*x509.Certificate)
			defer func() {
				mu.Lock()
				all = append(all, mine...)
				for s, l := range seen {
					leaves[s] = l
				}
				mu.Unlock()
			}()
			// Staggered over one interval, each worker dials at its own
			// pace and catches up (back to back) after a stall of the
			// machine, forgetting what is more than maxBacklog behind.
			next := start.Add(interval * time.Duration(w) / time.Duration(o.workers))
			timer := time.NewTimer(time.Until(next))
			defer timer.Stop()
			for n := 1; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
				req := o.requestEvery > 0 && n%o.requestEvery == 0
				h, leaf := dialOnce(o, req)
				mine = append(mine, h)
				if leaf != nil && seen[h.serial] == nil {
					seen[h.serial] = leaf
				}
				next = next.Add(interval)
				if behind := time.Since(next); behind > maxBacklog {
					next = next.Add(behind - maxBacklog)
				}
				timer.Reset(time.Until(next))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.SortFunc(all, func(a, b handshake) int { return a.end.Compare(b.end) })
	return loadResult{handshakes: all, leaves: leaves, elapsed: elapsed}
}

const (
	// dialTimeout bounds each connect and handshake, and each request. It
	// is generous: on a shared, overloaded machine a process may not run
	// for seconds, and that is not a failure of flowgate.
	dialTimeout = 15 * time.Second
	// maxBacklog is how far a load worker catches up after a stall.
	maxBacklog = 3 * time.Second
)

// dialOnce opens one new TLS connection, verifies the chain, and sends one
// request on it when withRequest is set.
func dialOnce(o loadOptions, withRequest bool) (handshake, *x509.Certificate) {
	h := handshake{start: time.Now(), request: withRequest}
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: dialTimeout},
		Config: &tls.Config{
			RootCAs:    o.roots,
			ServerName: o.serverName,
			NextProtos: []string{"http/1.1"},
			// X25519 alone: the hybrid post-quantum exchange would cost
			// both sides more CPU and test nothing about certificates.
			CurvePreferences:       []tls.CurveID{tls.X25519},
			ClientSessionCache:     nil, // no TLS 1.3 resumption
			SessionTicketsDisabled: true,
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", o.addr)
	h.end = time.Now()
	if err != nil {
		h.err = fmt.Errorf("handshake: %w", err)
		return h, nil
	}
	conn := c.(*tls.Conn)
	defer conn.Close()
	state := conn.ConnectionState()
	if state.DidResume {
		h.err = errors.New("handshake: the session was resumed; want a full handshake")
		return h, nil
	}
	leaf := state.PeerCertificates[0]
	h.serial, h.notAfter = leaf.SerialNumber.Text(16), leaf.NotAfter
	if withRequest {
		h.err = getOn(conn, o.serverName, o.path)
	}
	return h, leaf
}

// getOn sends GET path on conn and expects 200.
func getOn(conn *tls.Conn, host, path string) error {
	conn.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("request: reading the response: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("request: reading the body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("request: got status %d; want 200", resp.StatusCode)
	}
	return nil
}

// regressions returns the handshakes that got an older certificate than a
// handshake that had completed before they started: once flowgate serves a
// new certificate, no later handshake may get an older one. generation
// orders the serials.
func regressions(hs []handshake, generation map[string]int) []string {
	ok := func(h handshake) bool { _, known := generation[h.serial]; return h.err == nil && known }
	var byEnd, byStart []handshake
	for _, h := range hs {
		if ok(h) {
			byEnd = append(byEnd, h)
			byStart = append(byStart, h)
		}
	}
	slices.SortFunc(byEnd, func(a, b handshake) int { return a.end.Compare(b.end) })
	slices.SortFunc(byStart, func(a, b handshake) int { return a.start.Compare(b.start) })
	var out []string
	i, newest, newestSerial := 0, -1, ""
	for _, h := range byStart {
		for ; i < len(byEnd) && byEnd[i].end.Before(h.start); i++ {
			if g := generation[byEnd[i].serial]; g > newest {
				newest, newestSerial = g, byEnd[i].serial
			}
		}
		if generation[h.serial] < newest {
			out = append(out, fmt.Sprintf("handshake started at %s got serial %s after serial %s had been served",
				h.start.Format("15:04:05.000"), h.serial, newestSerial))
		}
	}
	return out
}

func TestRegressions(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	gen := map[string]int{"a": 0, "b": 1, "c": 2}
	tests := []struct {
		name string
		hs   []handshake
		want int
	}{
		{"in order", []handshake{
			{start: at(0), end: at(5), serial: "a"},
			{start: at(10), end: at(15), serial: "b"},
			{start: at(20), end: at(25), serial: "c"},
		}, 0},
		{"overlapping handshakes may straddle a swap", []handshake{
			{start: at(0), end: at(20), serial: "a"},
			{start: at(5), end: at(10), serial: "b"},
		}, 0},
		{"old certificate after a new one", []handshake{
			{start: at(0), end: at(5), serial: "b"},
			{start: at(10), end: at(15), serial: "a"},
		}, 1},
		{"failures and unknown serials are ignored", []handshake{
			{start: at(0), end: at(5), serial: "c"},
			{start: at(10), end: at(15), err: errors.New("x")},
			{start: at(20), end: at(25), serial: "zz"},
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := regressions(tt.hs, gen); len(got) != tt.want {
				t.Errorf("regressions: got %d %q; want %d", len(got), got, tt.want)
			}
		})
	}
}
