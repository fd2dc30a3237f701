package fault

import (
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// slowConn is the outcome of one slowloris connection.
type slowConn struct {
	cut     time.Duration // from the first header byte to flowgate closing
	sent    int           // header bytes sent before the cut
	answer  string        // what flowgate wrote before closing, if anything
	dialErr error
	closed  bool // flowgate closed the connection within the test's bound
}

// TestSlowloris holds 500 TLS connections that send their request headers a
// byte at a time. With http.read_header_timeout 2s each is cut about 2 s
// after its first byte, while a normal client's requests keep succeeding
// quickly.
//
// It does not run in parallel with the other tests: the latency it
// measures is flowgate's, not that of a machine busy with other tests.
func TestSlowloris(t *testing.T) {
	const (
		slow       = 500
		byteEvery  = 500 * time.Millisecond
		dialers    = 4
		timeout    = 2 * time.Second
		giveUp     = 15 * time.Second // a connection still open by then is a failure
		normalRate = 20 * time.Millisecond
	)
	raiseNoFile(t, 4*slow)
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{stub.Addr},
		Config:    "http:\n  read_header_timeout: 2s\n",
	})
	pid := pidOf(t, fg.StateDir)
	fdsBefore := fdCount(t, pid)

	// The normal client: one request every 20 ms over a kept-alive
	// connection, from before the first slow connection until after the
	// last is cut.
	stop := make(chan struct{})
	var (
		normalWG  sync.WaitGroup
		latencies []time.Duration
		failures  []string
	)
	normalWG.Go(func() {
		tick := time.NewTicker(normalRate)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			resp, err := fg.Client.Get(fg.URL("/headers"))
			if err != nil {
				failures = append(failures, err.Error())
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failures = append(failures, resp.Status)
				continue
			}
			latencies = append(latencies, time.Since(start))
		}
	})

	results := make([]slowConn, slow)
	var wg, dialWG sync.WaitGroup
	next := make(chan int)
	start := time.Now()
	for range dialers {
		dialWG.Go(func() {
			for i := range next {
				c, err := tryDialTLS(fg, 10*time.Second)
				if err != nil {
					results[i].dialErr = err
					continue
				}
				wg.Go(func() { results[i] = holdSlow(c, byteEvery, giveUp) })
			}
		})
	}
	for i := range slow {
		next <- i
	}
	close(next)
	dialWG.Wait()
	opened := time.Since(start)
	peakFDs := fdCount(t, pid)
	wg.Wait()
	total := time.Since(start)
	time.Sleep(500 * time.Millisecond) // the normal client runs on after the last cut
	close(stop)
	normalWG.Wait()

	var cuts []time.Duration
	answers := map[string]int{}
	for i, r := range results {
		switch {
		case r.dialErr != nil:
			t.Errorf("slow connection %d: %v", i, r.dialErr)
		case !r.closed:
			t.Errorf("slow connection %d: still open %v after its first byte (%d bytes sent); want it cut at the 2s header timeout", i, giveUp, r.sent)
		default:
			cuts = append(cuts, r.cut)
			answers[r.answer]++
		}
	}
	if len(cuts) > 0 {
		slices.Sort(cuts)
		// Each was cut (checked above); the typical one at the timeout. The
		// first byte leaves just after the handshake, when the server's
		// clock has already started.
		if lo, med := cuts[0], cuts[len(cuts)/2]; lo < timeout-500*time.Millisecond || med > timeout+500*time.Millisecond {
			t.Errorf("slow connections cut from %v, median %v after their first byte; want about %v", lo, med, timeout)
		}
		harness.Figure(t, "slowloris: %d TLS connections sending headers a byte every %v (opened in %v): %d cut by read_header_timeout %v; cut after first byte min %v / median %v / max %v; flowgate's last words %v; all gone %v after the first dial",
			slow, byteEvery, opened.Round(time.Millisecond), len(cuts), timeout,
			cuts[0].Round(time.Millisecond), cuts[len(cuts)/2].Round(time.Millisecond), cuts[len(cuts)-1].Round(time.Millisecond),
			answers, total.Round(time.Millisecond))
	}

	if len(failures) > 0 {
		t.Errorf("normal client: %d requests failed during the slowloris (%v); want none", len(failures), failures[:min(len(failures), 5)])
	}
	if len(latencies) < 50 {
		t.Fatalf("normal client: only %d requests completed; want at least 50", len(latencies))
	}
	p50, p99, pmax := percentile(latencies, 50), percentile(latencies, 99), percentile(latencies, 100)
	if p99 > 100*time.Millisecond {
		t.Errorf("normal client during the slowloris: p99 %v; want under 100ms", p99)
	}
	harness.Figure(t, "slowloris: a normal client meanwhile sent %d requests, 0 failed: p50 %v, p99 %v, max %v",
		len(latencies), p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), pmax.Round(10*time.Microsecond))

	if !harness.Poll(5*time.Second, func() bool { return fdCount(t, pid) <= fdsBefore+5 }) {
		t.Errorf("flowgate's descriptors after the slowloris: got %d; want about the %d before", fdCount(t, pid), fdsBefore)
	}
	harness.Figure(t, "slowloris: flowgate's open descriptors %d before, %d when the last slow connection was opened, %d after", fdsBefore, peakFDs, fdCount(t, pid))
}

// holdSlow sends an endless request header one byte at a time until
// flowgate closes the connection or giveUp passes.
func holdSlow(c *tls.Conn, every, giveUp time.Duration) slowConn {
	defer c.Close()
	var r slowConn
	closed := make(chan []byte, 1)
	go func() {
		// The reader learns when flowgate closes (EOF, reset) and what it
		// wrote first, if anything.
		b, _ := io.ReadAll(io.LimitReader(c, 4096))
		closed <- b
	}()
	header := []byte("GET /headers HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	deadline := time.NewTimer(giveUp)
	defer deadline.Stop()
	for {
		b := byte('a')
		if r.sent < len(header) {
			b = header[r.sent]
		}
		if _, err := c.Write([]byte{b}); err == nil {
			r.sent++
		}
		select {
		case got := <-closed:
			r.cut, r.closed = time.Since(start), true
			if len(got) > 0 {
				r.answer = firstLine(got)
			} else {
				r.answer = "nothing (closed)"
			}
			return r
		case <-deadline.C:
			return r
		case <-tick.C:
		}
	}
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\r' || c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}
