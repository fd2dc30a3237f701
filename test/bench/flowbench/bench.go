package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// benchConfig is what `flowbench run` was asked to do.
type benchConfig struct {
	flowgate  string
	cert, key string
	out       string
	quick     bool
	runs      int
	duration  time.Duration
	warmup    time.Duration
	idleConns int
	peers     []string
	only      []string // scenario ids; empty runs all
	pprof     bool
	keepDir   bool
	// flowgateEnv is added to flowgate's environment, KEY=VALUE each: a
	// runtime setting (GOGC, GODEBUG, GOMEMLIMIT) to measure.
	flowgateEnv []string
}

func parseBenchFlags(args []string, stderr io.Writer) (benchConfig, error) {
	fs := flag.NewFlagSet("flowbench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c benchConfig
	var peers, only string
	fs.StringVar(&c.flowgate, "flowgate", "", "flowgate `BINARY` to measure (required)")
	fs.StringVar(&c.cert, "cert", "", "PEM certificate `FILE` every peer serves (required)")
	fs.StringVar(&c.key, "key", "", "PEM private key `FILE` of --cert (required)")
	fs.StringVar(&c.out, "out", "test/artifacts/bench", "output `DIR` for results.md, results.json, runs.jsonl and logs")
	fs.BoolVar(&c.quick, "quick", false, "one short run per peer and scenario (CI)")
	fs.IntVar(&c.runs, "runs", 0, "measured runs per peer and scenario (default 5; 1 with --quick)")
	fs.DurationVar(&c.duration, "duration", 0, "length of one run (default 8s; 2s with --quick)")
	fs.DurationVar(&c.warmup, "warmup", 0, "unmeasured load per peer before a scenario (default 2s; 1s with --quick)")
	fs.IntVar(&c.idleConns, "idle-conns", 0, "idle WebSockets held for the memory scenario (default 5000; 1000 with --quick)")
	fs.StringVar(&peers, "peers", strings.Join(peerNames, ","), "comma-separated `PEERS` to measure")
	fs.StringVar(&only, "scenarios", "", "comma-separated scenario `IDS` to run (default all)")
	fs.BoolVar(&c.pprof, "pprof", false, "after the measured runs, save a flowgate CPU profile of each scenario (and a heap profile with idle WebSockets) into OUT/pprof")
	fs.BoolVar(&c.keepDir, "keep", false, "keep the work directory (configs, peer logs)")
	fs.Func("flowgate-env", "add `KEY=VALUE` to flowgate's environment, such as GOGC=off (repeatable; every peer otherwise runs with a clean one)", func(v string) error {
		k, _, ok := strings.Cut(v, "=")
		switch {
		case !ok || k == "" || strings.ContainsAny(k, " \t"):
			return fmt.Errorf("%q is not KEY=VALUE", v)
		case k == "GOMAXPROCS":
			return errors.New("GOMAXPROCS stays 1: every proxy gets one core")
		}
		c.flowgateEnv = append(c.flowgateEnv, v)
		return nil
	})
	fs.StringVar(&proxyCore, "proxy-core", proxyCore, "`CPU` list (taskset -c) of the proxy under test")
	fs.StringVar(&loadCore, "load-core", loadCore, "`CPU` list (taskset -c) of the load generators and upstreams")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.flowgate == "" || c.cert == "" || c.key == "" {
		return c, errors.New("--flowgate, --cert and --key are required")
	}
	def := func(v *int, full, quick int) {
		if *v <= 0 {
			*v = full
			if c.quick {
				*v = quick
			}
		}
	}
	defD := func(v *time.Duration, full, quick time.Duration) {
		if *v <= 0 {
			*v = full
			if c.quick {
				*v = quick
			}
		}
	}
	def(&c.runs, 5, 1)
	def(&c.idleConns, 5000, 1000)
	defD(&c.duration, 8*time.Second, 2*time.Second)
	defD(&c.warmup, 2*time.Second, time.Second)
	for p := range strings.SplitSeq(peers, ",") {
		if !slices.Contains(peerNames, p) {
			return c, fmt.Errorf("--peers: unknown peer %q (known: %s)", p, strings.Join(peerNames, ", "))
		}
		c.peers = append(c.peers, p)
	}
	if only != "" {
		for id := range strings.SplitSeq(only, ",") {
			if scenarioByID(id) == nil {
				return c, fmt.Errorf("--scenarios: unknown scenario %q", id)
			}
			c.only = append(c.only, id)
		}
	}
	return c, nil
}

// bench is one benchmark session.
type bench struct {
	cfg       benchConfig
	dir       string // work directory
	upstreams []string
	upCmds    []*exec.Cmd
	peers     []*peer
	log       io.Writer
	runs      *os.File // runs.jsonl
	results   []result
	failures  []string
	started   time.Time
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	for _, tool := range []string{"taskset", "wrk", "h2load", "nginx", "haproxy", "caddy"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found in PATH; test/bench/run.sh installs it", tool)
		}
	}
	raiseFileLimit()
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	if cfg.pprof {
		if err := os.MkdirAll(filepath.Join(cfg.out, "pprof"), 0o755); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "flowbench-")
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, dir: dir, log: stdout, started: time.Now()}
	defer func() {
		b.stopAll()
		if cfg.keepDir {
			fmt.Fprintf(stdout, "work directory kept: %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	if b.runs, err = os.Create(filepath.Join(cfg.out, "runs.jsonl")); err != nil {
		return err
	}
	defer b.runs.Close()
	if err := b.setup(ctx); err != nil {
		return err
	}
	b.runScenarios(ctx)
	b.collectPeerLogs()
	rep := buildReport(b.meta(), b.results, b.failures)
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, rep.markdown())
	if len(b.failures) > 0 {
		return fmt.Errorf("%d failure(s):\n  %s", len(b.failures), strings.Join(b.failures, "\n  "))
	}
	return ctx.Err()
}

// raiseFileLimit lifts the soft open-files limit to the hard one; the
// peers inherit it (5,000 idle WebSockets need two sockets each).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// setup starts the two upstreams and every peer, and checks that each peer
// forwards what it should.
func (b *bench) setup(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	addrs, cmd, err := startUpstream(self, []string{"up0", "up1"}, filepath.Join(b.cfg.out, "upstream.log"))
	if err != nil {
		return err
	}
	b.upCmds = append(b.upCmds, cmd)
	b.upstreams = addrs
	b.logf("upstreams on %s (core %s)", strings.Join(b.upstreams, ", "), loadCore)
	env := &peerEnv{
		dir:       b.dir,
		certFile:  b.cfg.cert,
		keyFile:   b.cfg.key,
		upstreams: b.upstreams,
		flowgate:  b.cfg.flowgate,
		root:      os.Geteuid() == 0,

		flowgateEnv: b.cfg.flowgateEnv,
	}
	ports, err := freePorts(len(b.cfg.peers) + 1)
	if err != nil {
		return err
	}
	for i, name := range b.cfg.peers {
		p := &peer{name: name, port: ports[i], env: env, logPath: filepath.Join(b.dir, name+".log")}
		if name == "flowgate" {
			p.adminPort = ports[len(ports)-1]
		}
		if err := p.start(ctx); err != nil {
			return err
		}
		b.peers = append(b.peers, p)
		b.logf("%s on %s (core %s), pids %v", name, p.addr(), proxyCore, p.pids)
	}
	for _, p := range b.peers {
		if err := checkPeer(ctx, p); err != nil {
			return fmt.Errorf("%s is not configured like the others: %w", p.name, err)
		}
	}
	return nil
}

// startUpstream starts `flowbench upstream` on the load core, one process
// with a node of each name, and reads the addresses it bound.
func startUpstream(self string, names []string, logPath string) ([]string, *exec.Cmd, error) {
	listen := strings.TrimSuffix(strings.Repeat("127.0.0.1:0,", len(names)), ",")
	cmd := exec.Command("taskset", "-c", loadCore, self, "upstream", "--name", strings.Join(names, ","), "--addr", listen)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting upstream: %w", err)
	}
	br := bufio.NewReader(stdout)
	var addrs []string
	for range names {
		line, err := br.ReadString('\n')
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), upstreamListening)
		if err != nil || !ok {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, nil, fmt.Errorf("upstream did not start (see %s): %q %v", logPath, line, err)
		}
		addrs = append(addrs, addr)
	}
	go io.Copy(logf, br)
	return addrs, cmd, nil
}

func (b *bench) stopAll() {
	for _, p := range b.peers {
		p.stop()
	}
	for _, c := range b.upCmds {
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
	}
}

// collectPeerLogs copies the peers' logs next to the results.
func (b *bench) collectPeerLogs() {
	for _, p := range b.peers {
		if data, err := os.ReadFile(p.logPath); err == nil {
			os.WriteFile(filepath.Join(b.cfg.out, p.name+".log"), data, 0o644)
		}
	}
	if data, err := os.ReadFile(filepath.Join(b.dir, "nginx-error.log")); err == nil {
		os.WriteFile(filepath.Join(b.cfg.out, "nginx-error.log"), data, 0o644)
	}
}

// record keeps a result and appends it to runs.jsonl.
func (b *bench) record(r result) {
	b.results = append(b.results, r)
	line, _ := json.Marshal(r)
	b.runs.Write(append(line, '\n'))
	if r.Error != "" {
		b.failures = append(b.failures, fmt.Sprintf("%s/%s run %d: %s", r.Scenario, r.Peer, r.Run, r.Error))
	}
}

// fetch GETs an admin URL into a file.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
