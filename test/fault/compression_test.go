package fault

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestCompressionUnderManyStreams: 40 clients hold streamed responses (4 s
// each) open at once, each asking for gzip. A compressor (about 1 MiB) is held
// for as long as its response lasts, so http.compression.max_concurrent
// (8 here) of them are compressed and the other 32 go out as the node sent
// them, counted as busy; every client gets every line. Once they are done,
// the slots are free again.
func TestCompressionUnderManyStreams(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Upstreams: []string{stub.Addr},
		Config:    "http:\n  compression:\n    enabled: true\n    max_concurrent: 8\n    types: [text/plain]\n",
	})
	pid := pidOf(t, fg.StateDir)
	before := rssKB(t, pid)
	const clients, lines = 40, 40
	want := ""
	for i := range lines {
		want += fmt.Sprintf("line %d\n", i)
	}
	cfg := fg.TLS.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{TLSClientConfig: cfg, DisableCompression: true, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		gzipped int
		peakRSS int
	)
	start := make(chan struct{})
	for range clients {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest(http.MethodGet, fg.URL(fmt.Sprintf("/drip?lines=%d&every=100ms", lines)), nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Error(err)
				return
			}
			if resp.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Errorf("gzipped stream: %v", err)
					return
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Errorf("gzipped stream: %v", err)
					return
				}
				mu.Lock()
				gzipped++
				mu.Unlock()
			}
			if string(body) != want {
				t.Errorf("a client got %q; want %d lines", body, lines)
			}
		})
	}
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		default:
			peakRSS = max(peakRSS, rssKB(t, pid))
			waitOrDone(done)
		}
	}
	busy := fg.Metric(t, "flowgate_compression_busy_total")
	if gzipped != 8 || busy != clients-8 {
		t.Errorf("%d of %d streams compressed, %v counted busy; want 8 (max_concurrent) and %d", gzipped, clients, busy, clients-8)
	}
	// The slots are back: the next stream is compressed.
	req, _ := http.NewRequest(http.MethodGet, fg.URL("/drip?lines=2&every=10ms"), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("after the %d streams ended: Content-Encoding %q; want gzip", clients, resp.Header.Get("Content-Encoding"))
	}
	harness.Figure(t, "%d streamed responses at once asking for gzip, max_concurrent 8: %d compressed, %v sent as they were; flowgate RSS %d KiB before, %d KiB at the peak",
		clients, gzipped, busy, before, peakRSS)
	if strings.Contains(fg.Logs(), "panic") {
		t.Errorf("flowgate logged a panic:\n%s", fg.Logs())
	}
}

// waitOrDone waits a moment, or less if done closes.
func waitOrDone(done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(50 * time.Millisecond):
	}
}
