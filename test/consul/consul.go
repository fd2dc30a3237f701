// Package consultest starts a real Consul agent for tests.
//
// The agent is the pinned Consul v1.16.1 built by test/tools/consul/build.sh;
// Start finds it through FLOWGATE_CONSUL_BIN or the build script's cache
// path. It runs in dev mode (in-memory state, its own single-node cluster),
// listens on loopback only, on free ports, and is killed when the test ends.
package consultest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Version is the Consul release the tests run.
const Version = "1.16.1"

// NodeName is the node name of the dev agent.
const NodeName = "flowgate-test"

// startTimeout bounds the wait for the agent to elect itself leader.
const startTimeout = 60 * time.Second

// Agent is a running Consul dev agent.
type Agent struct {
	// Addr is the HTTP API address, "127.0.0.1:PORT". It stays the same
	// across Restart.
	Addr string

	bin     string
	config  string
	logPath string
	client  *api.Client

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Binary returns the path of the Consul binary: $FLOWGATE_CONSUL_BIN, else
// ${FLOWGATE_CACHE:-$HOME/.cache/flowgate}/consul-1.16.1. When there is none,
// it fails the test under CI=true and skips it otherwise, saying how to build
// it.
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("FLOWGATE_CONSUL_BIN")
	if bin == "" {
		cache := os.Getenv("FLOWGATE_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatalf("finding the consul binary: %v; set FLOWGATE_CONSUL_BIN", err)
			}
			cache = filepath.Join(home, ".cache", "flowgate")
		}
		bin = filepath.Join(cache, "consul-"+Version)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		msg := fmt.Sprintf("CONSUL AGENT MISSING: no executable Consul v%s at %s; run test/tools/consul/build.sh (or set FLOWGATE_CONSUL_BIN)", Version, bin)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING: " + msg)
	}
	return bin
}

// Start starts a Consul dev agent on free loopback ports, waits until it is
// leader and its node is healthy, and kills it when the test ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // another process may take a free port first
		a, err := newAgent(bin, dir, attempt)
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = a.start(); lastErr == nil {
			t.Cleanup(func() {
				a.kill()
				if t.Failed() {
					t.Logf("consul agent log (%s):\n%s", a.logPath, tail(a.logPath, 60))
				}
			})
			return a
		}
		a.kill()
	}
	t.Fatalf("starting consul agent: %v", lastErr)
	return nil
}

func newAgent(bin, dir string, attempt int) (*Agent, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	httpPort, serfLAN, serfWAN, server := ports[0], ports[1], ports[2], ports[3]
	hcl := fmt.Sprintf(`node_name = %q
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
advertise_addr = "127.0.0.1"
log_level = "info"
disable_update_check = true
ports {
  http = %d
  https = -1
  dns = -1
  grpc = -1
  grpc_tls = -1
  serf_lan = %d
  serf_wan = %d
  server = %d
}
`, NodeName, httpPort, serfLAN, serfWAN, server)
	config := filepath.Join(dir, fmt.Sprintf("consul-%d.hcl", attempt))
	if err := os.WriteFile(config, []byte(hcl), 0o600); err != nil {
		return nil, fmt.Errorf("writing consul config: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	client, err := api.NewClient(&api.Config{
		Address:    addr,
		Scheme:     "http",
		HttpClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return &Agent{Addr: addr, bin: bin, config: config, logPath: filepath.Join(dir, fmt.Sprintf("consul-%d.log", attempt)), client: client}, nil
}

// start runs the agent process and waits until it is ready.
func (a *Agent) start() error {
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("consul log: %w", err)
	}
	cmd := exec.Command(a.bin, "agent", "-dev", "-config-file", a.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("running %s: %w", a.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()
	return a.waitReady(done)
}

// waitReady polls until the agent has a leader and its node's serfHealth
// check passes, or the process exits.
func (a *Agent) waitReady(done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-done:
			return fmt.Errorf("consul agent exited during start; log:\n%s", tail(a.logPath, 30))
		case <-ctx.Done():
			return fmt.Errorf("consul agent not ready after %v: %v; log:\n%s", startTimeout, last, tail(a.logPath, 30))
		case <-tick.C:
		}
		leader, err := a.client.Status().Leader()
		if err != nil || leader == "" {
			last = fmt.Errorf("no leader yet (%v)", err)
			continue
		}
		checks, _, err := a.client.Health().Node(NodeName, nil)
		if err != nil {
			last = err
			continue
		}
		for _, c := range checks {
			if c.CheckID == "serfHealth" && c.Status == api.HealthPassing {
				return nil
			}
		}
		last = errors.New("node not yet healthy")
	}
}

// kill kills the process and waits for it to exit.
func (a *Agent) kill() {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Stop kills the agent (SIGKILL, like a crash); its dev-mode state is lost.
func (a *Agent) Stop(t testing.TB) {
	t.Helper()
	a.kill()
}

// Restart starts a fresh agent on the same ports after Stop (or kills the
// running one first). Like a real agent that lost its state, it knows no
// services.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.kill()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err = a.start(); err == nil {
			return
		}
		a.kill()
		if time.Now().After(deadline) {
			t.Fatalf("restarting consul agent on %s: %v", a.Addr, err)
		}
		time.Sleep(200 * time.Millisecond) // the old sockets may still be closing
	}
}

// Client returns an API client for the agent (no keep-alive connections, so
// it leaves no goroutines behind).
func (a *Agent) Client() *api.Client { return a.client }

// Service describes a service instance to register.
type Service struct {
	// ID is the service ID; required.
	ID string
	// Name is the service name; required.
	Name string
	// Address is the service address; empty makes Consul use the node
	// address (127.0.0.1).
	Address string
	// Port is the service port.
	Port int
	// Tags and Meta are registered as given.
	Tags []string
	// Meta is the service meta data.
	Meta map[string]string
	// Weights are registered when not nil.
	Weights *api.AgentWeights
	// Status is the initial state of the TTL check ("passing", "warning",
	// "critical"); empty means passing.
	Status string
}

// CheckID returns the ID of the TTL check RegisterService gives a service.
func CheckID(serviceID string) string { return "service:" + serviceID }

// RegisterService registers s with a TTL check (long enough never to expire
// during a test) that SetCheck drives.
func (a *Agent) RegisterService(t testing.TB, s Service) {
	t.Helper()
	status := s.Status
	if status == "" {
		status = api.HealthPassing
	}
	err := a.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta, Weights: s.Weights,
		Check: &api.AgentServiceCheck{CheckID: CheckID(s.ID), TTL: "1h", Status: status},
	})
	if err != nil {
		t.Fatalf("registering service %q in consul: %v", s.ID, err)
	}
}

// DeregisterService removes a service instance.
func (a *Agent) DeregisterService(t testing.TB, id string) {
	t.Helper()
	if err := a.client.Agent().ServiceDeregister(id); err != nil {
		t.Fatalf("deregistering service %q from consul: %v", id, err)
	}
}

// SetCheck sets the TTL check of a registered service to status ("pass",
// "warn", "fail" or "passing", "warning", "critical").
func (a *Agent) SetCheck(t testing.TB, serviceID, status string) {
	t.Helper()
	if err := a.client.Agent().UpdateTTL(CheckID(serviceID), "set by test", status); err != nil {
		t.Fatalf("setting check of %q to %s: %v", serviceID, status, err)
	}
}

// Maintenance puts a service instance into maintenance mode or takes it out.
func (a *Agent) Maintenance(t testing.TB, serviceID string, enable bool) {
	t.Helper()
	var err error
	if enable {
		err = a.client.Agent().EnableServiceMaintenance(serviceID, "test")
	} else {
		err = a.client.Agent().DisableServiceMaintenance(serviceID)
	}
	if err != nil {
		t.Fatalf("setting maintenance of %q to %v: %v", serviceID, enable, err)
	}
}

// freePorts returns n distinct loopback ports that were free for both TCP
// and UDP (Serf uses both) when asked.
func freePorts(n int) ([]int, error) {
	var ports []int
	var hold []func() error
	defer func() {
		for _, c := range hold {
			_ = c()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		hold = append(hold, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // UDP side taken; try another
		}
		hold = append(hold, u.Close)
		ports = append(ports, port)
	}
	return ports, nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
