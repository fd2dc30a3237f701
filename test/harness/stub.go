package harness

import (
	"strings"
	"testing"
	"time"
)

// startTimeout bounds the wait for a started process to report its
// addresses.
const startTimeout = 30 * time.Second

// Stub is a running stand-in Flowable node (test/flowablestub).
type Stub struct {
	// Name is the node name, sent by the stub as X-Node on every response.
	Name string
	// Addr is the bound address, "127.0.0.1:PORT". It stays the same across
	// Restart.
	Addr string

	t   testing.TB
	bin string
	p   *process
}

// StartStub starts a stub node named name on a free loopback port. It is
// stopped when the test ends.
func StartStub(t testing.TB, name string) *Stub {
	t.Helper()
	return StartStubAt(t, name, "127.0.0.1:0")
}

// StartStubAt starts a stub node named name on addr.
func StartStubAt(t testing.TB, name, addr string) *Stub {
	t.Helper()
	s := &Stub{Name: name, t: t, bin: BuildStub(t)}
	s.start(addr)
	return s
}

func (s *Stub) start(addr string) {
	s.t.Helper()
	s.p = startProcess(s.t, "stub "+s.Name, s.bin, []string{"--addr", addr, "--name", s.Name}, nil)
	const prefix = "flowablestub listening on "
	line, _, err := s.p.waitLine(0, startTimeout, func(l string) bool { return strings.HasPrefix(l, prefix) })
	if err != nil {
		s.t.Fatalf("stub %s: %v\n%s", s.Name, err, s.p.output())
	}
	s.Addr, _, _ = strings.Cut(strings.TrimPrefix(line, prefix), " ")
}

// URL is "http://" + Addr.
func (s *Stub) URL() string { return "http://" + s.Addr }

// Stop stops the node gracefully (SIGTERM) and waits for it to exit.
func (s *Stub) Stop() { s.p.stop(stopTimeout) }

// Kill kills the node at once (SIGKILL), as a crash would.
func (s *Stub) Kill() { s.p.kill() }

// Restart starts the node again on the same address after Stop or Kill.
func (s *Stub) Restart() {
	s.t.Helper()
	s.p.stop(stopTimeout)
	s.start(s.Addr)
}

// Output returns what the node printed so far.
func (s *Stub) Output() string { return s.p.output() }
