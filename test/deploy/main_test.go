package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// buildVersion is the version the tests stamp into the binary they build.
const buildVersion = "0.0.0-deploytest"

var (
	// workDir holds what TestMain builds; removed when the tests end.
	workDir string

	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flowgate-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating temp dir:", err)
		os.Exit(1)
	}
	workDir = dir
	code := 0
	func() {
		defer os.RemoveAll(dir)
		defer func() {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
				code = 1
			}
		}()
		code = m.Run()
	}()
	os.Exit(code)
}

// repoRoot is the repository root: this package lives in test/deploy.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s has no go.mod: %v", root, err)
	}
	return root
}

// repoFile reads a file of the repository.
func repoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatalf("reading %s: %v", rel, err)
	}
	return b
}

// flowgateBin builds flowgate once with .ci/build.sh, the command the
// Dockerfile runs, and returns its path.
func flowgateBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		builtBin = filepath.Join(workDir, "bin", "flowgate")
		buildErr = runBuildScript(repoRoot(t), builtBin, buildVersion)
	})
	if buildErr != nil {
		t.Fatalf("building flowgate with .ci/build.sh: %v", buildErr)
	}
	return builtBin
}

// runBuildScript runs .ci/build.sh in dir with OUT and VERSION set.
func runBuildScript(dir, out, version string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(dir, ".ci", "build.sh"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OUT="+out, "VERSION="+version)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// needTool returns the path of a command the test needs. Missing, it fails
// the test under CI=true and skips it loudly otherwise.
func needTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("TOOL MISSING: %s is not installed (bash test/run.sh installs it)", name)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING: " + msg)
	return ""
}

// result is what a finished command printed.
type result struct {
	stdout, stderr string
	err            error
}

// runCmd runs a command with a deadline and returns its output.
func runCmd(t testing.TB, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{stdout: out.String(), stderr: errb.String(), err: err}
}

// checkConfig runs `flowgate check --config path` and fails the test with
// flowgate's own error text when the configuration is invalid.
func checkConfig(t testing.TB, path string) {
	t.Helper()
	r := runCmd(t, nil, flowgateBin(t), "check", "--config", path)
	if r.err != nil {
		t.Fatalf("flowgate check --config %s: %v\n%s", path, r.err, r.stderr)
	}
	if !strings.Contains(r.stderr, "configuration is valid") {
		t.Fatalf("flowgate check stderr: got %q; want it to say the configuration is valid", r.stderr)
	}
}

// servingLine matches the agent's start-up log line (text format).
var servingLine = regexp.MustCompile(`msg="flowgate serving" https=(\S+) http=(\S*) admin=(\S*)`)

// running is a flowgate process started by startFlowgate.
type running struct {
	https, http, admin string
	logs               *syncBuffer
}

// startFlowgate runs `flowgate run` with args and env, waits for its
// "flowgate serving" log line, and stops it (SIGTERM, then SIGKILL) when the
// test ends.
func startFlowgate(t testing.TB, env []string, args ...string) *running {
	t.Helper()
	cmd := exec.Command(flowgateBin(t), append([]string{"run"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stdout = io.Discard
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting flowgate: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		pw.Close()
		close(exited)
	}()
	logs := &syncBuffer{}
	found := make(chan []string, 1)
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteLine(line)
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		<-scanDone
		if t.Failed() {
			t.Logf("flowgate log:\n%s", logs.String())
		}
	})
	select {
	case m := <-found:
		return &running{https: m[1], http: m[2], admin: m[3], logs: logs}
	case <-exited:
		<-scanDone
		t.Fatalf("flowgate exited before serving; log:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("flowgate did not log \"flowgate serving\" within 30s; log:\n%s", logs.String())
	}
	return nil
}

// syncBuffer collects log lines from one goroutine for others to read.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) WriteLine(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
	b.buf.WriteByte('\n')
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
