package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stopTimeout bounds the wait for a process after SIGTERM in cleanup before
// it is killed.
const stopTimeout = 15 * time.Second

// process is a started child process whose stdout and stderr are captured
// line by line.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and output is drained
	err  error         // cmd.Wait's result; read after done

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
}

// startProcess starts bin with args and env (added to a cleaned copy of
// the environment) and stops it when the test ends.
func startProcess(t testing.TB, name, bin string, args, env []string) *process {
	t.Helper()
	p := &process{name: name, done: make(chan struct{}), changed: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.SysProcAttr = sysProcAttr()
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	var readers sync.WaitGroup
	readers.Go(func() { p.capture(stdout) })
	readers.Go(func() { p.capture(stderr) })
	go func() {
		readers.Wait() // Wait must not be called before the pipes are drained
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(stopTimeout)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

// cleanEnv is the test's environment without FLOWGATE_* variables, so that
// a developer's settings do not leak into the processes under test.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLOWGATE_") {
			out = append(out, kv)
		}
	}
	return out
}

func (p *process) capture(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

// output returns everything captured so far.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// snapshot returns the lines captured so far and a channel closed at the
// next one.
func (p *process) snapshot() ([]string, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines[:len(p.lines):len(p.lines)], p.changed
}

// waitLine waits until a line from index from on satisfies match and
// returns it and its index. It fails when the process exits first or the
// timeout passes.
func (p *process) waitLine(from int, timeout time.Duration, match func(string) bool) (string, int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		lines, changed := p.snapshot()
		for i := from; i < len(lines); i++ {
			if match(lines[i]) {
				return lines[i], i, nil
			}
		}
		from = max(from, len(lines))
		select {
		case <-changed:
		case <-p.done:
			// The readers have drained; look once more, then give up.
			lines, _ := p.snapshot()
			for i := from; i < len(lines); i++ {
				if match(lines[i]) {
					return lines[i], i, nil
				}
			}
			return "", 0, fmt.Errorf("%s exited (%v) before the awaited log line", p.name, p.err)
		case <-deadline.C:
			return "", 0, fmt.Errorf("%s: no awaited log line within %v", p.name, timeout)
		}
	}
}

// signal sends sig unless the process has exited.
func (p *process) signal(sig os.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("%s has already exited (%v)", p.name, p.err)
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		return -1, fmt.Errorf("%s still running after %v", p.name, timeout)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0, nil
	case errors.As(p.err, &ee):
		return ee.ExitCode(), nil
	}
	return -1, p.err
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to timeout and then kills the process.
func (p *process) stop(timeout time.Duration) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if _, err := p.wait(timeout); err != nil {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// kill kills the process at once and waits for it.
func (p *process) kill() {
	if p.exited() {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
}
