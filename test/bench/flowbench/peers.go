package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Cores: the proxy under test gets one, the load generators and the
// upstreams the other. flowbench run's --proxy-core and --load-core change
// them (test/bench/run.sh puts both on core 0 on a one-CPU machine, where
// the figures only prove that everything works).
var (
	proxyCore = "1"
	loadCore  = "0"
)

// peerNames are the proxies compared, flowgate first.
var peerNames = []string{"flowgate", "nginx", "haproxy", "caddy"}

// peer is one running proxy under test.
type peer struct {
	name      string
	port      int // HTTPS
	adminPort int // flowgate's admin listener; 0 for the others
	env       *peerEnv
	cmd       *exec.Cmd
	exited    chan struct{}
	pids      []int // the process and its children (nginx's worker)
	logPath   string
}

func (p *peer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// command builds the peer's command line from a fresh configuration.
func (p *peer) command() ([]string, error) {
	switch p.name {
	case "flowgate":
		return flowgateCommand(p.env, p.port, p.adminPort)
	case "nginx":
		return nginxCommand(p.env, p.port)
	case "haproxy":
		return haproxyCommand(p.env, p.port)
	case "caddy":
		return caddyCommand(p.env, p.port)
	}
	return nil, fmt.Errorf("unknown peer %q", p.name)
}

// environ is the peer's environment: a clean one, the same for every
// peer, and for flowgate what --flowgate-env adds.
func (p *peer) environ() []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + p.env.dir,
		"XDG_DATA_HOME=" + filepath.Join(p.env.dir, "xdg-data"),
		"XDG_CONFIG_HOME=" + filepath.Join(p.env.dir, "xdg-config"),
		"GOMAXPROCS=1",
	}
	if p.name == "flowgate" {
		env = append(env, p.env.flowgateEnv...)
	}
	return env
}

// start launches the peer pinned to the proxy core and waits until it
// completes TLS handshakes.
func (p *peer) start(ctx context.Context) error {
	argv, err := p.command()
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s: %v\n", time.Now().Format(time.RFC3339), argv)
	cmd := exec.Command("taskset", append([]string{"-c", proxyCore}, argv...)...)
	cmd.Dir = p.env.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = p.environ()
	// If flowbench dies, its peers follow (nginx's master then stops its
	// worker).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd = cmd
	p.exited = make(chan struct{})
	go func() { cmd.Wait(); close(p.exited) }()
	if err := p.waitReady(ctx, 15*time.Second); err != nil {
		p.stop()
		return fmt.Errorf("%s did not start: %w (log: %s)", p.name, err, p.logPath)
	}
	p.pids = procTree(cmd.Process.Pid)
	return nil
}

// waitReady polls until a TLS handshake succeeds, the process exits, or
// the timeout passes.
func (p *peer) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("exited: %v", p.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		d := tls.Dialer{Config: clientTLS(nil)}
		c, err := d.DialContext(ctx, "tcp", p.addr())
		if err == nil {
			c.Close()
			// nginx forks its worker after binding; give it a moment.
			if p.name == "nginx" {
				time.Sleep(200 * time.Millisecond)
			}
			return nil
		}
		last = err
	}
	return fmt.Errorf("no TLS handshake within %v: %w", timeout, last)
}

// stop terminates the peer and waits for it.
func (p *peer) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		for _, pid := range p.pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-p.exited
	}
	p.cmd = nil
}

// restart stops the peer and starts it again: a fresh process for
// memory measurements.
func (p *peer) restart(ctx context.Context) error {
	p.stop()
	return p.start(ctx)
}

// running reports an error when the peer's process has exited.
func (p *peer) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited unexpectedly (log: %s)", p.name, p.logPath)
	default:
		return nil
	}
}

// freePorts reserves n distinct loopback ports by binding and releasing
// them.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserving a port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// clientTLS is the load generators' TLS configuration: no certificate
// verification (as wrk and h2load), X25519 only (what OpenSSL 3.0 clients
// offer, so every peer does the same key exchange), HTTP/1.1 unless nextProtos
// says otherwise.
func clientTLS(nextProtos []string) *tls.Config {
	if nextProtos == nil {
		nextProtos = []string{"http/1.1"}
	}
	return &tls.Config{
		InsecureSkipVerify: true,
		ServerName:         "localhost",
		CurvePreferences:   []tls.CurveID{tls.X25519},
		NextProtos:         nextProtos,
	}
}
