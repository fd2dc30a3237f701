package certs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// filesEnv is a running Files over real files in a temporary directory, with
// a real TLS server in front of it.
type filesEnv struct {
	*fixtureServer
	t                 *testing.T
	dir               string
	certFile, keyFile string
	files             *Files
	logs              *fixtureLog
	kubeGen           int // generation of the Kubernetes-style layout, 0 if plain
}

// filesEnvOptions shapes a filesEnv. Zero values mean: a plain directory,
// 30ms debounce, and a re-check interval of an hour, so that only
// file-system events can cause a reload.
type filesEnvOptions struct {
	kube     bool // tls.crt/tls.key -> ..data/... like a Kubernetes secret volume
	debounce time.Duration
	recheck  time.Duration
}

// startFilesEnv writes initial, builds a Files from it, runs it until the test
// ends, and serves TLS with it.
func startFilesEnv(t *testing.T, initial *fixturePair, o filesEnvOptions) *filesEnv {
	t.Helper()
	e := &filesEnv{t: t, dir: t.TempDir(), logs: &fixtureLog{}}
	if o.kube {
		e.certFile = filepath.Join(e.dir, "tls.crt")
		e.keyFile = filepath.Join(e.dir, "tls.key")
		e.kubeSwap(initial)
		for _, name := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(e.dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		e.certFile = filepath.Join(e.dir, "cert.pem")
		e.keyFile = filepath.Join(e.dir, "key.pem")
		e.writeInPlace(initial.certPEM, initial.keyPEM)
	}
	if o.debounce == 0 {
		o.debounce = 30 * time.Millisecond
	}
	if o.recheck == 0 {
		o.recheck = time.Hour
	}
	f, err := NewFiles(FilesOptions{
		Pairs:           []Pair{{CertFile: e.certFile, KeyFile: e.keyFile}},
		Debounce:        o.debounce,
		RecheckInterval: o.recheck,
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:      prometheus.NewPedanticRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.files = f
	runFiles(t, f)
	e.fixtureServer = startFixtureServer(t, filesServerConfig(f))
	return e
}

// runFiles runs f until the test ends and checks that Run returns nil. It
// returns once Run has made its first check, so the watches are in place.
func runFiles(t *testing.T, f *Files) {
	t.Helper()
	before := f.checks.Load()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: got %v; want nil", err)
		}
	})
	fixtureWait(t, "Run's first check", func() (bool, string) {
		got := f.checks.Load()
		return got > before, fmt.Sprintf("%d checks", got)
	})
}

// writeInPlace rewrites the pair's files in place (truncate and write), as
// an editor or a plain "cp" does.
func (e *filesEnv) writeInPlace(certPEM, keyPEM []byte) {
	e.t.Helper()
	if certPEM != nil {
		fixtureWrite(e.t, e.certFile, certPEM)
	}
	if keyPEM != nil {
		fixtureWrite(e.t, e.keyFile, keyPEM)
	}
}

// writeRename writes each file to a temporary name in the same directory and
// renames it over the target, as consul-template and Nomad templates do.
func (e *filesEnv) writeRename(certPEM, keyPEM []byte) {
	e.t.Helper()
	for _, w := range []struct {
		path string
		data []byte
	}{{e.certFile, certPEM}, {e.keyFile, keyPEM}} {
		if w.data == nil {
			continue
		}
		tmp := w.path + ".tmp"
		fixtureWrite(e.t, tmp, w.data)
		if err := os.Rename(tmp, w.path); err != nil {
			e.t.Fatal(err)
		}
	}
}

// kubeSwap publishes p the way the kubelet updates a secret volume: a new
// timestamped directory, a "..data_tmp" symlink to it renamed over "..data",
// then the old directory removed.
func (e *filesEnv) kubeSwap(p *fixturePair) {
	e.t.Helper()
	old := fmt.Sprintf("..gen_%d", e.kubeGen)
	e.kubeGen++
	gen := fmt.Sprintf("..gen_%d", e.kubeGen)
	if err := os.Mkdir(filepath.Join(e.dir, gen), 0o755); err != nil {
		e.t.Fatal(err)
	}
	fixtureWrite(e.t, filepath.Join(e.dir, gen, "tls.crt"), p.certPEM)
	fixtureWrite(e.t, filepath.Join(e.dir, gen, "tls.key"), p.keyPEM)
	tmp := filepath.Join(e.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, "..data")); err != nil {
		e.t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(e.dir, old)); err != nil {
		e.t.Fatal(err)
	}
}

// reloads reads the reload counter of the pair for result.
func (e *filesEnv) reloads(result string) int {
	return int(testutil.ToFloat64(e.files.metrics.reloads.WithLabelValues(e.certFile, result)))
}

// status is the Info of the single pair.
func (e *filesEnv) status() Info { return e.files.Status()[0] }

// waitServed waits until a handshake without SNI gets serial.
func (e *filesEnv) waitServed(serial string) {
	e.t.Helper()
	fixtureWait(e.t, "serial "+serial+" served", func() (bool, string) {
		got, err := e.handshake(e.t, "", nil)
		if err != nil {
			return false, "handshake error " + err.Error()
		}
		return got == serial, "serial " + got + " served"
	})
}

// waitFailures waits until the failure counter reaches n.
func (e *filesEnv) waitFailures(n int) {
	e.t.Helper()
	fixtureWait(e.t, fmt.Sprintf("%d failed reloads", n), func() (bool, string) {
		got := e.reloads(ResultFailure)
		return got == n, fmt.Sprintf("%d failed reloads", got)
	})
}

// waitChecks waits until Run has completed n more checks than before.
func (e *filesEnv) waitChecks(before int64, n int64) {
	e.t.Helper()
	fixtureWait(e.t, fmt.Sprintf("at least %d checks", before+n), func() (bool, string) {
		got := e.files.checks.Load()
		return got >= before+n, fmt.Sprintf("%d checks", got)
	})
}

// expectServed asserts, right now, which serial a handshake gets.
func (e *filesEnv) expectServed(serial string) {
	e.t.Helper()
	if got := e.served(e.t, ""); got != serial {
		e.t.Errorf("served serial: got %s; want %s", got, serial)
	}
}
