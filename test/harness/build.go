// Package harness builds and starts the real flowgate binary and the
// stand-in Flowable node (test/flowablestub) for end-to-end tests, browser
// tests and benchmarks.
//
// Binaries are built once per test binary, without -race, into a temporary
// directory; call Main from TestMain to remove it afterwards:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// or, to also check for leaked goroutines:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(harness.M(m)) }
//
// Every process is started on loopback with port 0 where possible, bound
// addresses are read back from the process, and every process is stopped
// when its test ends.
//
// It also holds what the end-to-end packages share: a throw-away test CA
// and its certificates (NewTestCA, TestCA.Leaf), atomic file replacement
// (ReplaceFile), samples read from the admin /metrics page (MetricSamples,
// Flowgate.Metric), Poll, and Figure for the README's measured figures.
package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var build struct {
	mu   sync.Mutex
	dir  string            // temporary directory of built binaries
	bins map[string]string // package path -> binary
	errs map[string]error
}

// Main runs the tests of a package and then removes the binaries the harness
// built. Use it as the package's TestMain.
func Main(m *testing.M) { os.Exit(M(m).Run()) }

// M wraps m so that Run also removes the binaries the harness built, for
// TestMain functions that pass m on, such as goleak.VerifyTestMain(M(m)).
func M(m *testing.M) interface{ Run() int } { return cleanupM{m} }

type cleanupM struct{ m *testing.M }

func (c cleanupM) Run() int {
	code := c.m.Run()
	build.mu.Lock()
	if build.dir != "" {
		os.RemoveAll(build.dir)
		build.dir, build.bins, build.errs = "", nil, nil
	}
	build.mu.Unlock()
	return code
}

// BuildFlowgate builds ./cmd/flowgate once per test binary and returns the
// path of the executable.
func BuildFlowgate(t testing.TB) string {
	t.Helper()
	return buildOnce(t, "./cmd/flowgate", "flowgate")
}

// BuildStub builds ./test/flowablestub once per test binary and returns the
// path of the executable.
func BuildStub(t testing.TB) string {
	t.Helper()
	return buildOnce(t, "./test/flowablestub", "flowablestub")
}

// ModuleRoot returns the directory of flowgate's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: not inside the flowgate module")
	}
	return filepath.Dir(gomod)
}

func buildOnce(t testing.TB, pkg, name string) string {
	t.Helper()
	build.mu.Lock()
	defer build.mu.Unlock()
	if bin, ok := build.bins[pkg]; ok {
		return bin
	}
	if err, ok := build.errs[pkg]; ok {
		t.Fatal(err)
	}
	if build.dir == "" {
		dir, err := os.MkdirTemp("", "flowgate-e2e-bin-")
		if err != nil {
			t.Fatalf("creating the build directory: %v", err)
		}
		build.dir = dir
		build.bins = make(map[string]string)
		build.errs = make(map[string]error)
	}
	bin := filepath.Join(build.dir, name)
	if err := goBuild(ModuleRoot(t), pkg, bin); err != nil {
		build.errs[pkg] = err
		t.Fatal(err)
	}
	build.bins[pkg] = bin
	return bin
}

func goBuild(root, pkg, bin string) error {
	// No -race, whatever the test binary was built with: the processes are
	// measured and stressed, not checked for races.
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, out.Bytes())
	}
	return nil
}
