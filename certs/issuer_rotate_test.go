package certs

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// startIssuer builds an issuer and runs it until the returned stop is called.
// It must be called inside a synctest bubble.
func startIssuer(t *testing.T, opts IssuerOptions) (iss *Issuer, stop func()) {
	t.Helper()
	iss = newTestIssuer(t, opts)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- iss.Run(ctx) }()
	synctest.Wait() // Run is waiting for its first check
	return iss, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: got %v; want nil after cancel", err)
		}
	}
}

// sleepUntil advances the bubble's clock to at and lets every goroutine
// settle.
func sleepUntil(at time.Time) {
	time.Sleep(time.Until(at))
	synctest.Wait()
}

func TestIssuerRotatesAtRenewalPoint(t *testing.T) {
	tests := []struct {
		name                      string
		leafLifetime, renewBefore time.Duration // zero: default
		wantRenewBefore           time.Duration
		rotations                 int
	}{
		{name: "defaults", wantRenewBefore: 10 * 24 * time.Hour, rotations: 4},
		{name: "shortest", leafLifetime: MinLeafLifetime, wantRenewBefore: MinLeafLifetime / 3, rotations: 3},
		{name: "one year", leafLifetime: 365 * 24 * time.Hour, renewBefore: 30 * 24 * time.Hour, wantRenewBefore: 30 * 24 * time.Hour, rotations: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				testRotation(t, tt.leafLifetime, tt.renewBefore, tt.wantRenewBefore, tt.rotations)
			})
		})
	}
}

// testRotation runs an issuer through the given number of rotations and
// checks each.
func testRotation(t *testing.T, leafLifetime, renewBeforeOpt, renewBefore time.Duration, rotations int) {
	opts := testIssuerOptions(t)
	opts.LeafLifetime, opts.RenewBefore = leafLifetime, renewBeforeOpt
	lifetime := cmp.Or(leafLifetime, DefaultLeafLifetime)
	reg := prometheus.NewPedanticRegistry()
	opts.Registerer = reg
	iss, stop := startIssuer(t, opts)
	defer stop()
	caPEM := iss.CACertificatePEM()
	roots := caPool(t, caPEM)

	var offsets []time.Duration
	for i := range rotations {
		prev := servedLeaf(t, iss)
		renewAt := iss.Status()[0].NextRotation
		offset := prev.NotAfter.Sub(renewAt)
		if offset < renewBefore || offset > renewBefore+renewBefore/10 {
			t.Fatalf("rotation %d: renewal %s before NotAfter; want within [%s, %s]", i, offset, renewBefore, renewBefore+renewBefore/10)
		}
		offsets = append(offsets, offset)

		sleepUntil(renewAt.Add(-time.Second))
		if leaf := servedLeaf(t, iss); !bytes.Equal(leaf.Raw, prev.Raw) {
			t.Fatalf("rotation %d: leaf replaced one second before the renewal point", i)
		}
		sleepUntil(renewAt.Add(time.Millisecond))
		leaf := servedLeaf(t, iss)
		if bytes.Equal(leaf.Raw, prev.Raw) {
			t.Fatalf("rotation %d: leaf not replaced at the renewal point %s", i, renewAt)
		}
		if got, want := leaf.NotAfter, renewAt.Add(lifetime); got.Sub(want).Abs() > time.Second {
			t.Errorf("rotation %d: NotAfter got %s; want %s", i, got, want)
		}
		verifyServerLeaf(t, leaf, roots, issuerTestHosts, time.Now())
		onDisk := readLeafFile(t, filepath.Join(opts.StateDir, LeafCertFileName))
		if !bytes.Equal(onDisk.Raw, leaf.Raw) {
			t.Errorf("rotation %d: leaf on disk has serial %s; want the served %s", i, SerialHex(onDisk), SerialHex(leaf))
		}
	}
	distinct := map[time.Duration]bool{}
	for _, o := range offsets {
		distinct[o] = true
	}
	if rotations > 1 && len(distinct) < 2 {
		t.Errorf("jitter of %d leaves: got offsets %v; want them to differ", rotations, offsets)
	}
	if got, _ := metricValue(t, reg, MetricIssuerRotations, map[string]string{"result": "success"}); got != float64(rotations+1) {
		t.Errorf("successful rotations: got %v; want %d (first issue and %d rotations)", got, rotations+1, rotations)
	}
	if !bytes.Equal(iss.CACertificatePEM(), caPEM) {
		t.Error("CA changed during rotations; want one stable CA")
	}
}

func TestRenewalPointJitter(t *testing.T) {
	notAfter := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const rb = 10 * 24 * time.Hour
	tests := []struct {
		name   string
		rand   func() []byte
		want   time.Duration // offset before notAfter
		approx bool
	}{
		{name: "zero bits", rand: func() []byte { return make([]byte, 8) }, want: rb},
		{name: "all bits", rand: func() []byte { return bytes.Repeat([]byte{0xff}, 8) }, want: rb + rb/10, approx: true},
		{name: "failing source", rand: func() []byte { return nil }, want: rb + rb/20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := notAfter.Sub(renewalPoint(notAfter, rb, bytes.NewReader(tt.rand())))
			if tt.approx && (got > tt.want || tt.want-got > time.Millisecond) || !tt.approx && got != tt.want {
				t.Errorf("offset: got %s; want %s", got, tt.want)
			}
		})
	}
	distinct := map[time.Time]bool{}
	for range 1000 {
		at := renewalPoint(notAfter, rb, rand.Reader)
		if off := notAfter.Sub(at); off < rb || off >= rb+rb/10 {
			t.Fatalf("offset: got %s; want within [%s, %s)", off, rb, rb+rb/10)
		}
		distinct[at] = true
	}
	if len(distinct) < 990 {
		t.Errorf("distinct renewal points in 1000 draws: got %d; want nearly 1000", len(distinct))
	}
}

// TestIssuerWallClockJump stands for a host that slept past the renewal
// point: Go timers did not run, the wall clock moved on. The periodic check
// must renew within CheckInterval.
func TestIssuerWallClockJump(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var skew atomic.Int64
		opts := testIssuerOptions(t)
		opts.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		iss, stop := startIssuer(t, opts)
		defer stop()
		first := servedLeaf(t, iss)
		start := time.Now()

		skew.Store(int64(25 * 24 * time.Hour))
		sleepUntil(start.Add(DefaultCheckInterval - time.Second))
		if !bytes.Equal(servedLeaf(t, iss).Raw, first.Raw) {
			t.Fatal("leaf replaced before the next check")
		}
		sleepUntil(start.Add(DefaultCheckInterval + time.Millisecond))
		leaf := servedLeaf(t, iss)
		if bytes.Equal(leaf.Raw, first.Raw) {
			t.Fatalf("leaf not replaced one check interval after the clock jumped past its renewal point")
		}
		if got, want := leaf.NotBefore, opts.Now().Add(-time.Hour); got.Sub(want).Abs() > time.Second {
			t.Errorf("new leaf NotBefore: got %s; want %s (by the wall clock)", got, want)
		}
	})
}

// breakDir makes dir unusable for writes, even for root: it moves the
// directory away and puts a regular file in its place. The returned func
// restores it.
func breakDir(t *testing.T, dir string) (restore func()) {
	t.Helper()
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir+".away", dir); err != nil {
			t.Fatal(err)
		}
	}
}

// breakLeafKey puts a non-empty directory where the leaf key goes, so that
// staging succeeds but replacing the key fails, even for root.
func breakLeafKey(t *testing.T, dir string) (restore func()) {
	t.Helper()
	key := filepath.Join(dir, LeafKeyFileName)
	if err := os.Rename(key, key+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(key, "blocker"), 0o700); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.RemoveAll(key); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(key+".away", key); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIssuerBackoffAndRecovery(t *testing.T) {
	tests := []struct {
		name       string
		breakState func(t *testing.T, dir string) (restore func())
	}{
		{name: "state directory gone", breakState: breakDir},
		{name: "leaf key path blocked", breakState: breakLeafKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testBackoff(t, tt.breakState) })
		})
	}
}

// testBackoff makes saving fail with breakState at the renewal point and
// checks the retries, then restores the state directory.
func testBackoff(t *testing.T, breakState func(t *testing.T, dir string) (restore func())) {
	opts := testIssuerOptions(t)
	reg := prometheus.NewPedanticRegistry()
	opts.Registerer = reg
	var log issuerLog
	opts.Logger = newTestLogger(&log)
	iss, stop := startIssuer(t, opts)
	defer stop()
	first := servedLeaf(t, iss)
	t0 := iss.Status()[0].NextRotation
	failures := func() float64 {
		v, _ := metricValue(t, reg, MetricIssuerRotations, map[string]string{"result": "failure"})
		return v
	}

	restore := breakState(t, opts.StateDir)
	sleepUntil(t0.Add(500 * time.Millisecond))
	rotated := servedLeaf(t, iss)
	if bytes.Equal(rotated.Raw, first.Raw) {
		t.Fatal("leaf not replaced at the renewal point although only saving failed; want the new leaf served from memory")
	}
	st := iss.Status()[0]
	if !strings.Contains(st.LastError, "served from memory") {
		t.Errorf("LastError: got %q; want it to say the leaf is served from memory", st.LastError)
	}
	if !st.NextRotation.Equal(t0.Add(time.Second)) {
		t.Errorf("NextRotation after the first failure: got %s; want %s", st.NextRotation, t0.Add(time.Second))
	}
	if next, _ := metricValue(t, reg, MetricIssuerNextRotation, nil); next != float64(t0.Add(time.Second).Unix()) {
		t.Errorf("%s: got %v; want %v", MetricIssuerNextRotation, next, t0.Add(time.Second).Unix())
	}

	// Retries 1 s, 2 s, 4 s, ... apart, capped at 5 min.
	var attempts []time.Duration
	for at, delay := time.Duration(0), time.Second; at <= time.Hour; at, delay = at+delay, min(2*delay, 5*time.Minute) {
		attempts = append(attempts, at)
	}
	for _, probe := range []time.Duration{1500 * time.Millisecond, 3500 * time.Millisecond, 7500 * time.Millisecond, 20 * time.Minute, time.Hour} {
		sleepUntil(t0.Add(probe))
		want := 0
		for _, a := range attempts {
			if a <= probe {
				want++
			}
		}
		if got := failures(); got != float64(want) {
			t.Errorf("failed attempts %s after the renewal point: got %v; want %d", probe, got, want)
		}
	}
	if got := servedLeaf(t, iss); !bytes.Equal(got.Raw, rotated.Raw) {
		t.Error("served leaf changed during retries; want the pending leaf kept")
	}
	last := attempts[len(attempts)-1]
	if st := iss.Status()[0]; !st.NextRotation.Equal(t0.Add(last + 5*time.Minute)) {
		t.Errorf("NextRotation with capped backoff: got %s; want %s", st.NextRotation, t0.Add(last+5*time.Minute))
	}
	if reloads, _ := metricValue(t, reg, MetricReloads, map[string]string{"name": "issuer", "result": "failure"}); reloads != 0 {
		t.Errorf("certificate reload failures: got %v; want 0 (a new leaf was served, only saving failed)", reloads)
	}

	// The directory comes back; the next retry (not the renewal point)
	// saves the pending leaf. Reload retries at once.
	restore()
	iss.Reload()
	synctest.Wait()
	st = iss.Status()[0]
	if st.LastError != "" {
		t.Errorf("LastError after recovery: got %q; want empty", st.LastError)
	}
	if st.Serial != SerialHex(rotated) {
		t.Errorf("serial after recovery: got %s; want the pending %s", st.Serial, SerialHex(rotated))
	}
	if onDisk := readLeafFile(t, filepath.Join(opts.StateDir, LeafCertFileName)); !bytes.Equal(onDisk.Raw, rotated.Raw) {
		t.Errorf("leaf on disk after recovery: got serial %s; want %s", SerialHex(onDisk), SerialHex(rotated))
	}
	if lo := rotated.NotAfter.Add(-11 * 24 * time.Hour); st.NextRotation.Before(lo) {
		t.Errorf("NextRotation after recovery: got %s; want the leaf's renewal point after %s", st.NextRotation, lo)
	}
	if got, _ := metricValue(t, reg, MetricIssuerRotations, map[string]string{"result": "success"}); got != 2 {
		t.Errorf("successful rotations: got %v; want 2", got)
	}
	if !strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("log: got %q; want the failures logged as errors", log.String())
	}
}

// TestIssuerUserCAExpiresAndIsReplaced covers a rotation that cannot issue
// (the user's CA would expire first): the old leaf keeps serving until the
// operator replaces the CA and sends a reload.
func TestIssuerUserCAExpiresAndIsReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		now := time.Now()
		user := newTestUserCA(t, dir, "corp", now.Add(-time.Hour), now.Add(40*24*time.Hour))
		opts := testIssuerOptions(t)
		opts.CACertFile, opts.CAKeyFile = user.certPath, user.keyPath
		reg := prometheus.NewPedanticRegistry()
		opts.Registerer = reg
		iss, stop := startIssuer(t, opts)
		defer stop()
		first := servedLeaf(t, iss)

		sleepUntil(iss.Status()[0].NextRotation.Add(time.Millisecond))
		if !bytes.Equal(servedLeaf(t, iss).Raw, first.Raw) {
			t.Fatal("leaf replaced although the CA expires before a new one would")
		}
		if st := iss.Status()[0]; !strings.Contains(st.LastError, "replace the CA") {
			t.Errorf("LastError: got %q; want advice to replace the CA", st.LastError)
		}
		if got, _ := metricValue(t, reg, MetricReloads, map[string]string{"name": "issuer", "result": "failure"}); got != 1 {
			t.Errorf("certificate reload failures: got %v; want 1", got)
		}

		next := newTestUserCA(t, t.TempDir(), "corp", now, now.Add(5*365*24*time.Hour))
		copyFile(t, next.certPath, user.certPath)
		copyFile(t, next.keyPath, user.keyPath)
		iss.Reload()
		synctest.Wait()
		leaf := servedLeaf(t, iss)
		if bytes.Equal(leaf.Raw, first.Raw) {
			t.Fatal("leaf not replaced after the CA was replaced and reloaded")
		}
		if !bytes.Equal(iss.CACertificatePEM(), next.certPEM) {
			t.Error("CACertificatePEM after reload: got the old CA; want the new one")
		}
		verifyServerLeaf(t, leaf, caPool(t, next.certPEM), issuerTestHosts, time.Now())
		if st := iss.Status()[0]; st.LastError != "" {
			t.Errorf("LastError after the new CA: got %q; want empty", st.LastError)
		}
		if got, _ := metricValue(t, reg, MetricIssuerCANotAfter, nil); got != float64(next.cert.NotAfter.Unix()) {
			t.Errorf("%s: got %v; want %v", MetricIssuerCANotAfter, got, next.cert.NotAfter.Unix())
		}
	})
}

// TestIssuerReplacesExpiringGeneratedCA lets a short-lived generated CA run
// out: the issuer creates a new CA before issuing a leaf that would outlive
// the old one.
func TestIssuerReplacesExpiringGeneratedCA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testIssuerOptions(t)
		opts.CALifetime = 45 * 24 * time.Hour
		iss, stop := startIssuer(t, opts)
		defer stop()
		oldCA := iss.CACertificatePEM()

		sleepUntil(iss.Status()[0].NextRotation.Add(time.Millisecond))
		newCA := iss.CACertificatePEM()
		if bytes.Equal(newCA, oldCA) {
			t.Fatal("CA kept although the new leaf would outlive it")
		}
		verifyServerLeaf(t, servedLeaf(t, iss), caPool(t, newCA), issuerTestHosts, time.Now())
		if got := globAll(t, filepath.Join(opts.StateDir, CACertFileName+".expired-*")); len(got) != 1 {
			t.Errorf("old CA certificate moved aside: got %v; want one file", got)
		}
		onDisk, err := os.ReadFile(filepath.Join(opts.StateDir, CACertFileName))
		if err != nil || !bytes.Equal(onDisk, newCA) {
			t.Errorf("ca.crt after replacement: got %q, %v; want the new CA", onDisk, err)
		}
	})
}

func TestIssuerRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		iss, stop := startIssuer(t, testIssuerOptions(t))
		defer stop()
		synctest.Wait()
		if err := iss.Run(t.Context()); err == nil {
			t.Error("second concurrent Run: got nil; want an error")
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestIssuerReloadUserCA covers SIGHUP with a user-provided CA: unchanged
// files change nothing, a broken file keeps the old CA and says so, a new CA
// gets a new leaf at once.
func TestIssuerReloadUserCA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		dir := t.TempDir()
		user := newTestUserCA(t, dir, "corp", now.Add(-time.Hour), now.Add(5*365*24*time.Hour))
		opts := testIssuerOptions(t)
		opts.CACertFile, opts.CAKeyFile = user.certPath, user.keyPath
		iss, stop := startIssuer(t, opts)
		defer stop()
		first := servedLeaf(t, iss)

		iss.Reload()
		synctest.Wait()
		if !bytes.Equal(servedLeaf(t, iss).Raw, first.Raw) {
			t.Error("reload with an unchanged CA replaced the leaf")
		}

		if err := os.WriteFile(user.certPath, []byte("half-written"), 0o644); err != nil {
			t.Fatal(err)
		}
		iss.Reload()
		synctest.Wait()
		if !bytes.Equal(servedLeaf(t, iss).Raw, first.Raw) {
			t.Error("reload with a broken CA file replaced the leaf")
		}
		if st := iss.Status()[0]; !strings.Contains(st.LastError, user.certPath) {
			t.Errorf("LastError with a broken CA file: got %q; want it to name %s", st.LastError, user.certPath)
		}
		if !bytes.Equal(iss.CACertificatePEM(), user.certPEM) {
			t.Error("CACertificatePEM with a broken CA file: got something else; want the old CA")
		}

		next := newTestUserCA(t, t.TempDir(), "corp", now, now.Add(5*365*24*time.Hour))
		copyFile(t, next.certPath, user.certPath)
		copyFile(t, next.keyPath, user.keyPath)
		iss.Reload()
		synctest.Wait()
		leaf := servedLeaf(t, iss)
		if bytes.Equal(leaf.Raw, first.Raw) {
			t.Fatal("reload with a new CA kept the leaf of the old CA")
		}
		verifyServerLeaf(t, leaf, caPool(t, next.certPEM), issuerTestHosts, time.Now())
		if st := iss.Status()[0]; st.LastError != "" {
			t.Errorf("LastError after a good reload: got %q; want empty", st.LastError)
		}
	})
}
