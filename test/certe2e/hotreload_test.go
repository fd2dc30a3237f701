package certe2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/certs"
	"github.com/flowgate/flowgate/test/harness"
)

// TestHotReloadUnderLoad replaces the certificate files 40 times while
// clients open new TLS connections continuously: 20 times by temporary file
// and rename, 20 times in place (truncate and write, certificate then key),
// half of those with a pause between the two files long enough for flowgate
// to look at a certificate that does not match its key. No handshake or
// request may fail, every handshake must get one of the written
// certificates, never an older one than a handshake before it got, and each
// write must be served within a second.
func TestHotReloadUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		renames  = 20
		inPlace  = 20
		runFor   = 30 * time.Second
		firstAt  = time.Second            // first write after the load starts
		spacing  = 700 * time.Millisecond // between writes
		slowGap  = 250 * time.Millisecond // cert-to-key pause of a slow in-place writer
		minRate  = 200.0                  // handshakes per second required
		maxDelay = time.Second            // p99 from a write to its first handshake
	)
	ca := harness.NewTestCA(t)
	files := newCertFiles(t.TempDir())
	pairs := make([]pemPair, 1+renames+inPlace)
	generation := make(map[string]int)
	for i := range pairs {
		pairs[i] = newPair(t, ca, 0x10000+int64(i))
		generation[pairs[i].serial] = i
	}
	files.replace(t, pairs[0])
	stub := harness.StartStub(t, "n1")
	fg := harness.StartFlowgate(t, harness.Options{
		Args:      []string{"--cert-file", files.cert, "--key-file", files.key},
		Upstreams: []string{stub.Addr},
		RootCAs:   ca.Pool,
	})
	nameLabel := fmt.Sprintf("name=%q", files.cert)
	failuresBefore := fg.Metric(t, certs.MetricReloads, nameLabel, `result="failure"`)

	ctx, cancel := context.WithCancel(t.Context())
	var res loadResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		res = runLoad(ctx, loadOptions{
			addr:         fg.HTTPS,
			serverName:   "localhost",
			roots:        ca.Pool,
			workers:      8,
			rate:         400,
			requestEvery: 10,
			path:         "/headers",
		})
	}()
	t.Cleanup(func() { cancel(); <-done })

	type write struct {
		gen          int
		serial, mode string
		began, done  time.Time // first byte written; both files complete
	}
	var writes []write
	start := time.Now()
	for i := 1; i < len(pairs); i++ {
		time.Sleep(time.Until(start.Add(firstAt + time.Duration(i-1)*spacing)))
		began := time.Now()
		var mode string
		switch {
		case i%2 == 1:
			mode = "rename"
			files.replace(t, pairs[i])
		case i%4 == 0:
			mode = "in place"
			files.overwrite(t, pairs[i], 0)
		default:
			mode = "in place, slow"
			files.overwrite(t, pairs[i], slowGap)
		}
		writes = append(writes, write{gen: i, serial: pairs[i].serial, mode: mode, began: began, done: time.Now()})
	}
	// Run for runFor, and on past the last write for longer than it may
	// take to serve it, should a stalled machine have delayed the writes.
	time.Sleep(time.Until(start.Add(runFor)))
	time.Sleep(time.Until(writes[len(writes)-1].done.Add(3 * maxDelay / 2)))
	cancel()
	<-done
	last := pairs[len(pairs)-1].serial

	failed := res.failures()
	for i, h := range failed {
		if i == 10 {
			t.Errorf("… and %d more failures", len(failed)-10)
			break
		}
		t.Errorf("connection at %s: %v", h.start.Format("15:04:05.000"), h.err)
	}
	for _, h := range res.handshakes {
		if _, ok := generation[h.serial]; h.err == nil && !ok {
			t.Errorf("handshake at %s got serial %s; want one of the certificates written", h.end.Format("15:04:05.000"), h.serial)
		}
	}
	for _, r := range regressions(res.handshakes, generation) {
		t.Error(r)
	}

	// The delay of a write runs until a handshake gets its certificate, or
	// a newer one when the next write followed within the debounce of a
	// burst (on a stalled machine the writes can bunch up).
	const burst = 500 * time.Millisecond
	seen := res.firstSeen()
	delays := make(map[string][]time.Duration)
	var all []time.Duration
	coalesced := 0
	for i, w := range writes {
		if _, ok := seen[w.serial]; !ok {
			if i+1 == len(writes) || writes[i+1].began.Sub(w.done) >= burst {
				t.Errorf("write %d (%s, serial %s at %s) was never served", i+1, w.mode, w.serial, w.done.Format("15:04:05.000"))
				continue
			}
			coalesced++
		}
		at, ok := res.servedAfter(w.gen, generation)
		if !ok {
			t.Errorf("write %d (%s, serial %s at %s): neither it nor a newer certificate was served", i+1, w.mode, w.serial, w.done.Format("15:04:05.000"))
			continue
		}
		d := max(0, at.Sub(w.done))
		delays[w.mode] = append(delays[w.mode], d)
		all = append(all, d)
	}
	if coalesced > 0 {
		harness.Figure(t, "hot reload under load: %d writes followed within %v by the next were served only as the newer certificate (debounced)", coalesced, burst)
	}
	for _, mode := range []string{"rename", "in place", "in place, slow"} {
		ds := delays[mode]
		harness.Figure(t, "hot reload (%s): %d writes, write-to-first-handshake p50 %v, p99 %v, max %v",
			mode, len(ds), percentile(ds, 50).Round(time.Millisecond), percentile(ds, 99).Round(time.Millisecond), percentile(ds, 100).Round(time.Millisecond))
	}
	p50, p99 := percentile(all, 50), percentile(all, 99)
	harness.Figure(t, "hot reload under load: %d certificate writes, new certificate served after p50 %v, p99 %v",
		len(all), p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	if p99 >= maxDelay {
		t.Errorf("write-to-first-handshake p99: got %v; want < %v", p99, maxDelay)
	}

	rate := res.rate()
	harness.Figure(t, "hot reload under load: %d new TLS connections in %v (%.0f handshakes/s, %d with a request), %d failed",
		len(res.handshakes), res.elapsed.Round(time.Millisecond), rate, res.requests(), len(failed))
	if rate < minRate {
		t.Errorf("handshake rate: got %.0f/s; want at least %.0f/s", rate, minRate)
	}
	if res.requests() == 0 {
		t.Errorf("requests sent: got 0; want some")
	}

	// The slow in-place writes leave a certificate beside the old key for
	// longer than the debounce: flowgate must have seen the mismatch, and
	// (as no handshake failed) kept the old pair.
	mismatches := fg.Metric(t, certs.MetricReloads, nameLabel, `result="failure"`) - failuresBefore
	harness.Figure(t, "hot reload under load: %.0f reloads rejected while a writer had replaced the certificate but not yet its key; the old pair kept serving", mismatches)
	if mismatches < 1 {
		t.Errorf("%s{result=\"failure\"} increase: got %v; want at least 1 from the slow in-place writes", certs.MetricReloads, mismatches)
	}
	st := fg.Status()
	if len(st.Certificates) != 1 || st.Certificates[0].Serial != last || st.Certificates[0].LastError != "" {
		t.Errorf("/status certificates: got %+v; want serial %s and no last_error", st.Certificates, last)
	}
}

// TestMismatchedKeyKeepsServing replaces the key file with the key of
// another certificate: the old certificate keeps serving, the failure is
// counted and shown in /status; a good pair afterwards is served.
func TestMismatchedKeyKeepsServing(t *testing.T) {
	t.Parallel()
	ca := harness.NewTestCA(t)
	files := newCertFiles(t.TempDir())
	a, b, other := newPair(t, ca, 0xa1), newPair(t, ca, 0xb2), newPair(t, ca, 0xc3)
	files.replace(t, a)
	fg := harness.StartFlowgate(t, harness.Options{
		Args:    []string{"--cert-file", files.cert, "--key-file", files.key},
		RootCAs: ca.Pool,
	})
	opts := loadOptions{addr: fg.HTTPS, serverName: "localhost", roots: ca.Pool}
	served := func() string {
		t.Helper()
		h, _ := dialOnce(opts, false)
		if h.err != nil {
			t.Fatalf("new TLS connection: %v", h.err)
		}
		return h.serial
	}
	nameLabel := fmt.Sprintf("name=%q", files.cert)
	reloads := func(result string) float64 {
		t.Helper()
		return fg.Metric(t, certs.MetricReloads, nameLabel, fmt.Sprintf("result=%q", result))
	}
	if got := served(); got != a.serial {
		t.Fatalf("served serial at start: got %s; want %s", got, a.serial)
	}
	failures, successes := reloads(certs.ResultFailure), reloads(certs.ResultSuccess)

	harness.ReplaceFile(t, files.key, other.key)
	if !harness.Poll(10*time.Second, func() bool { return reloads(certs.ResultFailure) > failures }) {
		t.Fatalf("%s{result=\"failure\"} stayed at %v after the key was replaced with another certificate's; want it counted", certs.MetricReloads, failures)
	}
	if got := served(); got != a.serial {
		t.Errorf("served serial with a mismatched key file: got %s; want the old %s", got, a.serial)
	}
	if got := reloads(certs.ResultFailure); got != failures+1 {
		t.Errorf("%s{result=\"failure\"}: got %v; want %v (one failure, counted once)", certs.MetricReloads, got, failures+1)
	}
	st := fg.Status()
	if len(st.Certificates) != 1 {
		t.Fatalf("/status certificates: got %d; want 1", len(st.Certificates))
	}
	if c := st.Certificates[0]; c.Serial != a.serial || !strings.Contains(c.LastError, files.key) {
		t.Errorf("/status certificate: got serial %s, last_error %q; want %s and an error naming %s", c.Serial, c.LastError, a.serial, files.key)
	} else {
		harness.Figure(t, "mismatched key: still serving serial %s; /status last_error %q", c.Serial, c.LastError)
	}

	files.replace(t, b)
	if !harness.Poll(5*time.Second, func() bool { return served() == b.serial }) {
		t.Fatalf("served serial after a good pair was written: got %s; want %s within 5s", served(), b.serial)
	}
	if got := reloads(certs.ResultSuccess); got <= successes {
		t.Errorf("%s{result=\"success\"}: got %v; want more than %v", certs.MetricReloads, got, successes)
	}
	if c := fg.Status().Certificates[0]; c.Serial != b.serial || c.LastError != "" {
		t.Errorf("/status certificate after the fix: got serial %s, last_error %q; want %s and none", c.Serial, c.LastError, b.serial)
	}
}
