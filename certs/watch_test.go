package certs

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestFilesWriterPatterns drives a running Files through the ways real
// writers replace certificate files, asserting after each step which serial
// a real TLS handshake gets. The re-check interval is an hour, so every
// reload here comes from a file-system event.
func TestFilesWriterPatterns(t *testing.T) {
	t.Parallel()
	ca := newFixtureCA(t, "writers root")

	tests := []struct {
		name string
		kube bool
		run  func(t *testing.T, e *filesEnv, old, next *fixturePair)
	}{
		{
			name: "rewrite in place",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				e.writeInPlace(next.certPEM, next.keyPEM)
				e.waitServed(next.serial)
			},
		},
		{
			name: "write temp then rename",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				e.writeRename(next.certPEM, next.keyPEM)
				e.waitServed(next.serial)
			},
		},
		{
			name: "kubernetes ..data symlink swap",
			kube: true,
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				e.kubeSwap(next)
				e.waitServed(next.serial)
				third := ca.issue(t, fixtureSpec{})
				e.kubeSwap(third)
				e.waitServed(third.serial)
			},
		},
		{
			name: "certificate written some time before the key",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				e.writeRename(next.certPEM, nil)
				e.waitFailures(1)
				e.expectServed(old.serial)
				if got := e.status().LastError; !strings.Contains(got, "does not belong") {
					t.Errorf("LastError while only the certificate is new: got %q; want a key mismatch", got)
				}
				e.writeRename(nil, next.keyPEM)
				e.waitServed(next.serial)
				if got := e.status().LastError; got != "" {
					t.Errorf("LastError after the key arrived: got %q; want empty", got)
				}
			},
		},
		{
			name: "garbage then fixed",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				e.writeInPlace([]byte("this is not a certificate\n"), nil)
				e.waitFailures(1)
				e.expectServed(old.serial)
				// More events and forced checks on the same broken file are
				// neither logged nor counted again.
				before := e.files.checks.Load()
				e.writeInPlace([]byte("this is not a certificate\n"), nil)
				e.waitChecks(before, 1)
				e.files.Reload()
				e.waitChecks(before, 2)
				if got := e.reloads(ResultFailure); got != 1 {
					t.Errorf("failures after repeated checks of one broken file: got %d; want 1", got)
				}
				if got := e.logs.count("certificate reload failed"); got != 1 {
					t.Errorf("failure log lines: got %d; want 1", got)
				}
				e.writeRename(next.certPEM, next.keyPEM)
				e.waitServed(next.serial)
			},
		},
		{
			name: "truncated certificate",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				e.writeRename(next.certPEM[:len(next.certPEM)/2], next.keyPEM)
				e.waitFailures(1)
				e.expectServed(old.serial)
				if got := e.status().LastError; !strings.Contains(got, "truncated") {
					t.Errorf("LastError: got %q; want it to mention truncation", got)
				}
				e.writeRename(next.certPEM, nil)
				e.waitServed(next.serial)
			},
		},
		{
			name: "deleted then recreated",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				if err := os.Remove(e.certFile); err != nil {
					t.Fatal(err)
				}
				e.waitFailures(1)
				e.expectServed(old.serial)
				if got := e.status().LastError; !strings.Contains(got, "no such file") {
					t.Errorf("LastError: got %q; want it to say the file is missing", got)
				}
				// Checks while the file stays missing report nothing new.
				before := e.files.checks.Load()
				e.files.Reload()
				e.waitChecks(before, 1)
				if got := e.reloads(ResultFailure); got != 1 {
					t.Errorf("failures after a re-check of the missing file: got %d; want 1", got)
				}
				if got := e.logs.count("certificate reload failed"); got != 1 {
					t.Errorf("failure log lines: got %d; want 1", got)
				}
				e.writeInPlace(next.certPEM, next.keyPEM)
				e.waitServed(next.serial)
			},
		},
		{
			name: "deleted then restored unchanged",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				if err := os.Remove(e.certFile); err != nil {
					t.Fatal(err)
				}
				e.waitFailures(1)
				e.writeInPlace(old.certPEM, nil)
				fixtureWait(t, "LastError cleared", func() (bool, string) {
					got := e.status().LastError
					return got == "", "LastError " + got
				})
				e.expectServed(old.serial)
				// Getting back the same files is not a reload.
				if got := e.reloads(ResultSuccess); got != 1 {
					t.Errorf("successful reloads: got %d; want 1 (the initial load)", got)
				}
			},
		},
		{
			name: "expired certificate refused",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				expired := ca.issue(t, fixtureSpec{notAfter: time.Now().Add(-time.Minute)})
				e.writeRename(expired.certPEM, expired.keyPEM)
				e.waitFailures(1)
				e.expectServed(old.serial)
				if got := e.status().LastError; !strings.Contains(got, "expired") {
					t.Errorf("LastError: got %q; want it to say expired", got)
				}
			},
		},
		{
			name: "key that does not match, then fixed",
			run: func(t *testing.T, e *filesEnv, old, next *fixturePair) {
				stranger := ca.issue(t, fixtureSpec{})
				e.writeRename(next.certPEM, stranger.keyPEM)
				e.waitFailures(1)
				e.expectServed(old.serial)
				if got := e.status().Serial; got != old.serial {
					t.Errorf("Status serial: got %s; want %s", got, old.serial)
				}
				e.writeRename(nil, next.keyPEM)
				e.waitServed(next.serial)
				if got := e.reloads(ResultFailure); got != 1 {
					t.Errorf("failures: got %d; want 1", got)
				}
				if got := e.status().Serial; got != next.serial {
					t.Errorf("Status serial: got %s; want %s", got, next.serial)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old, next := ca.issue(t, fixtureSpec{}), ca.issue(t, fixtureSpec{})
			e := startFilesEnv(t, old, filesEnvOptions{kube: tt.kube})
			e.expectServed(old.serial)
			tt.run(t, e, old, next)
		})
	}
}

// TestFilesBurstIsOneReload writes a burst of intermediate states; the
// debounce must turn it into one successful reload and no failure.
func TestFilesBurstIsOneReload(t *testing.T) {
	t.Parallel()
	ca := newFixtureCA(t, "burst root")
	old, next := ca.issue(t, fixtureSpec{}), ca.issue(t, fixtureSpec{})
	e := startFilesEnv(t, old, filesEnvOptions{debounce: 300 * time.Millisecond})

	e.writeInPlace([]byte("garbage"), nil)
	e.writeInPlace(next.certPEM[:40], nil)
	e.writeInPlace(next.certPEM, nil)
	e.writeRename(nil, next.keyPEM)
	_ = os.Chtimes(e.certFile, time.Now(), time.Now())
	e.waitServed(next.serial)

	if got := e.reloads(ResultSuccess); got != 2 {
		t.Errorf("successful reloads: got %d; want 2 (initial load and one reload)", got)
	}
	if got := e.reloads(ResultFailure); got != 0 {
		t.Errorf("failed reloads: got %d; want 0", got)
	}
}

// TestFilesNoOpChangeIsNotAReload rewrites identical contents: the check
// runs but records nothing.
func TestFilesNoOpChangeIsNotAReload(t *testing.T) {
	t.Parallel()
	ca := newFixtureCA(t, "noop root")
	old := ca.issue(t, fixtureSpec{})
	e := startFilesEnv(t, old, filesEnvOptions{})

	before := e.files.checks.Load()
	e.writeInPlace(old.certPEM, old.keyPEM)
	now := time.Now().Add(time.Minute)
	if err := os.Chtimes(e.keyFile, now, now); err != nil {
		t.Fatal(err)
	}
	e.waitChecks(before, 1)

	if got := e.reloads(ResultSuccess); got != 1 {
		t.Errorf("successful reloads: got %d; want 1 (the initial load)", got)
	}
	if got := e.logs.count("certificate reloaded"); got != 0 {
		t.Errorf("reload log lines: got %d; want 0\n%s", got, e.logs)
	}
	e.expectServed(old.serial)
}

// TestFilesFollowsSymlinkTarget covers a certificate path that is a symlink
// into another directory whose file is rewritten in place: the parent of the
// link sees no event, the watch on the target's directory does.
func TestFilesFollowsSymlinkTarget(t *testing.T) {
	t.Parallel()
	ca := newFixtureCA(t, "symlink root")
	old, next := ca.issue(t, fixtureSpec{}), ca.issue(t, fixtureSpec{})
	linkDir, targetDir := t.TempDir(), t.TempDir()
	realCert, realKey := filepath.Join(targetDir, "real-cert.pem"), filepath.Join(targetDir, "real-key.pem")
	fixtureWrite(t, realCert, old.certPEM)
	fixtureWrite(t, realKey, old.keyPEM)
	certFile, keyFile := filepath.Join(linkDir, "cert.pem"), filepath.Join(linkDir, "key.pem")
	if err := os.Symlink(realCert, certFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(realKey, keyFile); err != nil {
		t.Fatal(err)
	}
	f, err := NewFiles(FilesOptions{
		Pairs:           []Pair{{CertFile: certFile, KeyFile: keyFile}},
		Debounce:        30 * time.Millisecond,
		RecheckInterval: time.Hour,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	runFiles(t, f)
	srv := startFixtureServer(t, filesServerConfig(f))
	if got := srv.served(t, ""); got != old.serial {
		t.Fatalf("initial serial: got %s; want %s", got, old.serial)
	}

	fixtureWrite(t, realCert, next.certPEM)
	fixtureWrite(t, realKey, next.keyPEM)
	fixtureWait(t, "serial "+next.serial, func() (bool, string) {
		got := srv.served(t, "")
		return got == next.serial, "serial " + got
	})
}

// TestFilesPeriodicRecheck runs without a file-system watcher, in a synctest
// bubble: only the periodic re-check (default 30s) or Reload can see a
// change.
func TestFilesPeriodicRecheck(t *testing.T) {
	ca := newFixtureCA(t, "periodic root")
	old, next, third := ca.issue(t, fixtureSpec{}), ca.issue(t, fixtureSpec{}), ca.issue(t, fixtureSpec{})

	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		fixtureWrite(t, certFile, old.certPEM)
		fixtureWrite(t, keyFile, old.keyPEM)
		f, err := NewFiles(FilesOptions{
			Pairs:   []Pair{{CertFile: certFile, KeyFile: keyFile}},
			Logger:  slog.New(slog.DiscardHandler),
			noWatch: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- f.Run(ctx) }()
		synctest.Wait() // Run's first check is done

		served := func() string {
			c, err := f.GetCertificate(&tls.ClientHelloInfo{})
			if err != nil {
				t.Fatal(err)
			}
			return SerialHex(c.Leaf)
		}

		fixtureWrite(t, certFile, next.certPEM)
		fixtureWrite(t, keyFile, next.keyPEM)
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if got := served(); got != old.serial {
			t.Errorf("after 29s: got serial %s; want %s (no re-check yet)", got, old.serial)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := served(); got != next.serial {
			t.Errorf("after 31s: got serial %s; want %s", got, next.serial)
		}

		// Reload (SIGHUP) checks at once, without waiting for the interval.
		fixtureWrite(t, certFile, third.certPEM)
		fixtureWrite(t, keyFile, third.keyPEM)
		f.Reload()
		synctest.Wait()
		if got := served(); got != third.serial {
			t.Errorf("after Reload: got serial %s; want %s", got, third.serial)
		}

		if err := f.Run(ctx); err == nil {
			t.Error("second concurrent Run: got nil; want an error")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: got %v; want nil", err)
		}
	})
}

// TestDirWatcherRelevant pins which events cause a check. Real swaps are
// covered above; here each rule is checked on its own.
func TestDirWatcherRelevant(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	other := t.TempDir()
	target := filepath.Join(other, "real.crt")
	fixtureWrite(t, target, []byte("x"))
	link := filepath.Join(dir, "tls.crt")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	w, err := newDirWatcher([]string{link, filepath.Join(dir, "tls.key")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()

	tests := []struct {
		name string
		want bool
	}{
		{filepath.Join(dir, "tls.crt"), true},
		{filepath.Join(dir, "tls.key"), true},
		{filepath.Join(dir, "..data"), true},
		{filepath.Join(dir, "..2026_01_01_00_00_00.000"), true},
		{dir, true}, // the directory itself
		{filepath.Join(other, "real.crt"), true},
		{filepath.Join(dir, "tls.crt.tmp"), false},
		{filepath.Join(dir, "unrelated.pem"), false},
		{filepath.Join(other, "..data"), false}, // ".." names count only in configured directories
		{filepath.Join(other, "other.crt"), false},
	}
	for _, tt := range tests {
		if got := w.relevant(fsnotify.Event{Name: tt.name, Op: fsnotify.Write}); got != tt.want {
			t.Errorf("relevant(%s): got %t; want %t", tt.name, got, tt.want)
		}
	}
	watched := w.fs.WatchList()
	slices.Sort(watched)
	want := []string{dir, other}
	slices.Sort(want)
	if !slices.Equal(watched, want) {
		t.Errorf("watched directories: got %v; want %v", watched, want)
	}
}
