package fault

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// stateFiles are the files the issuer keeps, with their PEM block types.
var stateFiles = map[string][]string{
	"ca.crt":   {"CERTIFICATE"},
	"ca.key":   {"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"},
	"leaf.crt": {"CERTIFICATE"},
	"leaf.key": {"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"},
}

// TestKillDuringIssuerWrite kills flowgate with SIGKILL at delays that
// sweep its start-up, while the issuer creates the CA and the first leaf in
// an empty state directory, 20 times. Every state file left behind is
// whole (old or new, never torn), and the next start serves a certificate
// that verifies against the saved ca.crt, reusing a CA that was saved
// whole.
func TestKillDuringIssuerWrite(t *testing.T) {
	t.Parallel()
	const iterations = 20
	bin := harness.BuildFlowgate(t)
	stub := harness.StartStub(t, "n1")

	// When, after exec, the issuer writes: from its first temporary file to
	// the last state file, watched in calibration starts (the first, cold
	// one only warms the page cache). The kills sweep that window and a
	// little on either side.
	var from, to, startup time.Duration
	for c := range 3 {
		calib := filepath.Join(t.TempDir(), "state")
		window := make(chan [2]time.Duration, 1)
		go func() { window <- watchWrites(calib, 30*time.Second) }()
		startup = startAndKill(t, bin, calib, stub.Addr, -1)
		w := <-window
		if w[1] == 0 {
			t.Fatalf("calibration: the issuer wrote no leaf.crt while starting (%v to serve)", startup)
		}
		t.Logf("calibration %d: first state write %v, last %v, serving %v after exec", c, w[0], w[1], startup)
		switch c {
		case 0:
		case 1:
			from, to = w[0], w[1]
		default:
			from, to = min(from, w[0]), max(to, w[1])
		}
	}
	from, to = max(0, from-3*time.Millisecond), to+3*time.Millisecond

	outcomes := map[string]int{}
	var leftovers, whole, reused int
	for i := range iterations {
		stateDir := filepath.Join(t.TempDir(), "state")
		// Sweep the window, with jitter; exec's own jitter spreads it more.
		delay := from + time.Duration(float64(to-from)*(float64(i)+rand.Float64())/iterations)
		startAndKill(t, bin, stateDir, stub.Addr, delay)

		// What the kill left: every state file whole.
		left := map[string]bool{}
		entries, _ := os.ReadDir(stateDir)
		for _, e := range entries {
			name := e.Name()
			if _, ok := stateFiles[name]; ok {
				left[name] = true
				if err := checkWhole(filepath.Join(stateDir, name), stateFiles[name]); err != nil {
					t.Errorf("kill %d after %v: %s is torn: %v", i, delay, name, err)
				}
			} else if strings.Contains(name, ".tmp-") {
				leftovers++
			}
		}
		outcome := describeState(left)
		outcomes[outcome]++
		caBefore, _ := os.ReadFile(filepath.Join(stateDir, "ca.crt"))
		caWhole := left["ca.crt"] && left["ca.key"]

		// The next start serves, with a certificate from the saved CA.
		fg := harness.StartFlowgate(t, harness.Options{Args: []string{"--state-dir", stateDir}, Upstreams: []string{stub.Addr}})
		caPEM, err := os.ReadFile(filepath.Join(stateDir, "ca.crt"))
		if err != nil {
			t.Fatalf("kill %d (%s): no ca.crt after the restart: %v", i, outcome, err)
		}
		if stale, _ := filepath.Glob(filepath.Join(stateDir, ".*.tmp-*")); len(stale) > 0 {
			t.Errorf("kill %d (%s): staging files left after the restart: %v", i, outcome, stale)
		}
		if !bytes.Equal(caPEM, fg.CAPEM) {
			t.Errorf("kill %d (%s): the admin listener serves another CA than the saved ca.crt", i, outcome)
		}
		if caWhole && !bytes.Equal(caPEM, caBefore) {
			t.Errorf("kill %d (%s): the CA saved whole before the kill was replaced at restart; clients would lose trust", i, outcome)
		} else if caWhole {
			reused++
		}
		if caWhole {
			whole++
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		if _, err := servedSerial(fg.HTTPS, roots); err != nil {
			t.Errorf("kill %d (%s): handshake after the restart: %v; want a certificate verified by the saved ca.crt", i, outcome, err)
		}
		if err := fg.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, err := fg.Wait(15 * time.Second); err != nil || code != 0 {
			t.Errorf("kill %d: flowgate after SIGTERM: exit %d, %v; want 0", i, code, err)
		}
	}
	var summary []string
	for k, v := range outcomes {
		summary = append(summary, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(summary)
	harness.Figure(t, "kill -9 during the issuer's first writes (%d kills swept over %v..%v after exec, around the writes of a %v start-up): state left %s; torn files 0; every restart served a certificate verified by the saved CA; CA reused %d of %d times it was whole; %d temporary files left behind",
		iterations, from.Round(100*time.Microsecond), to.Round(100*time.Microsecond), startup.Round(time.Millisecond), strings.Join(summary, ", "), reused, whole, leftovers)
}

// watchWrites polls dir every 200 µs from now on and returns when the
// first file appeared in it and when leaf.crt did (zero if it never did
// within limit).
func watchWrites(dir string, limit time.Duration) [2]time.Duration {
	var w [2]time.Duration
	start := time.Now()
	for time.Since(start) < limit {
		entries, _ := os.ReadDir(dir)
		if len(entries) > 0 && w[0] == 0 {
			w[0] = time.Since(start)
		}
		for _, e := range entries {
			if e.Name() == "leaf.crt" {
				w[1] = time.Since(start)
				return w
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return w
}

// startAndKill starts `flowgate run` with an empty stateDir and kills it
// with SIGKILL after delay, then waits for it. A negative delay instead
// waits until it serves, kills it then, and returns how long that took.
func startAndKill(t *testing.T, bin, stateDir, upstream string, delay time.Duration) time.Duration {
	t.Helper()
	cmd := exec.Command(bin, "run", "--state-dir", stateDir, "--upstream", upstream,
		"--https-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	serving := make(chan struct{})
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting flowgate: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "flowgate serving") {
				close(serving)
				signalled = true
			}
		}
	}()
	var took time.Duration
	if delay < 0 {
		select {
		case <-serving:
			took = time.Since(start)
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("flowgate did not serve within 30s")
		}
	} else {
		time.Sleep(delay)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return took
}

// checkWhole reports whether path holds one or more PEM blocks of the
// given types and nothing else: a torn write leaves a partial block.
func checkWhole(path string, types []string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	rest := data
	for n := 0; ; n++ {
		if len(bytes.TrimSpace(rest)) == 0 {
			if n == 0 {
				return fmt.Errorf("empty (%d bytes)", len(data))
			}
			return nil
		}
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return fmt.Errorf("%d bytes after %d whole PEM blocks are not a PEM block", len(rest), n)
		}
		if !slices.Contains(types, block.Type) {
			return fmt.Errorf("a %q block; want one of %q", block.Type, types)
		}
	}
}

// describeState names what the kill left in the state directory.
func describeState(left map[string]bool) string {
	var names []string
	for _, n := range []string{"ca.key", "ca.crt", "leaf.key", "leaf.crt"} {
		if left[n] {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, "+")
}
