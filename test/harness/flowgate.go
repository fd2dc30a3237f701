package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/agent"
)

// Options configure StartFlowgate.
type Options struct {
	// Args are the flags after "flowgate run". Unless they set them
	// themselves, the harness adds --https-addr, --http-addr and
	// --admin-addr 127.0.0.1:0 and --state-dir in a temporary directory.
	// Flags win over the config file, so a Config that sets listen.* or
	// state_dir must come with those flags in Args.
	Args []string
	// Upstreams are added as --upstream flags (e.g. Stub.Addr).
	Upstreams []string
	// Config, when not empty, is written to a temporary config.yaml passed
	// with --config; Flowgate.WriteConfig rewrites it for a reload.
	Config string
	// Env are extra VAR=value settings. FLOWGATE_* variables of the test's
	// own environment are never passed on.
	Env []string
	// RootCAs verifies the HTTPS listener's certificate in Client. Nil uses
	// the built-in CA from the admin listener when it serves one, else no
	// verification at all.
	RootCAs *x509.CertPool
}

// Flowgate is a running `flowgate run` process.
type Flowgate struct {
	// HTTPS, HTTP and Admin are the bound listener addresses; HTTP or Admin
	// is empty when disabled.
	HTTPS, HTTP, Admin string
	// ConfigPath is the config file, empty when Options.Config was empty.
	ConfigPath string
	// StateDir is the --state-dir the harness chose, empty when Args set it.
	StateDir string
	// CAPEM is the built-in CA certificate, nil when the admin listener
	// serves none (file certificates, or no admin listener).
	CAPEM []byte
	// TLS is a client TLS configuration that trusts the listener's
	// certificate (see Options.RootCAs). Clone it before changing it.
	TLS *tls.Config
	// Client sends requests to the HTTPS listener over HTTP/2 or HTTP/1.1.
	// It does not follow redirects.
	Client *http.Client

	t testing.TB
	p *process
}

// FreePort returns a loopback address "127.0.0.1:PORT" that was free a
// moment ago. Use it when the port must be known in advance, for example
// to check redirects and X-Forwarded-Port, which report port 443 for a
// listener on port 0.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartFlowgate builds flowgate, starts `flowgate run` and waits until it
// serves. It fails the test, with the process output, when flowgate exits
// or does not serve within 30 s. The process gets SIGTERM when the test
// ends.
func StartFlowgate(t testing.TB, opts Options) *Flowgate {
	t.Helper()
	bin := BuildFlowgate(t)
	f := &Flowgate{t: t}
	args := append([]string{"run"}, opts.Args...)
	dir := t.TempDir()
	if opts.Config != "" {
		f.ConfigPath = filepath.Join(dir, "config.yaml")
		f.WriteConfig(opts.Config)
		args = append(args, "--config", f.ConfigPath)
	}
	for _, name := range []string{"https-addr", "http-addr", "admin-addr"} {
		if !hasFlag(opts.Args, name) {
			args = append(args, "--"+name, "127.0.0.1:0")
		}
	}
	if !hasFlag(opts.Args, "state-dir") {
		f.StateDir = filepath.Join(dir, "state")
		args = append(args, "--state-dir", f.StateDir)
	}
	for _, u := range opts.Upstreams {
		args = append(args, "--upstream", u)
	}
	f.p = startProcess(t, "flowgate", bin, args, opts.Env)

	line, _, err := f.p.waitLine(0, startTimeout, func(l string) bool { return strings.Contains(l, "flowgate serving") })
	if err != nil {
		t.Fatalf("flowgate %s: %v\n%s", strings.Join(args, " "), err, f.p.output())
	}
	addrs := logFields(line)
	f.HTTPS, f.HTTP, f.Admin = addrs["https"], addrs["http"], addrs["admin"]
	if f.HTTPS == "" {
		t.Fatalf("flowgate serving line without an https address: %s", line)
	}

	f.TLS = &tls.Config{RootCAs: opts.RootCAs, NextProtos: []string{"h2", "http/1.1"}}
	if opts.RootCAs == nil {
		if f.Admin != "" {
			if code, body := f.AdminGet(agent.CAPath); code == http.StatusOK {
				f.CAPEM = []byte(body)
			}
		}
		if f.CAPEM != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(f.CAPEM) {
				t.Fatalf("admin %s: not a PEM certificate:\n%s", agent.CAPath, f.CAPEM)
			}
			f.TLS.RootCAs = pool
		} else {
			f.TLS.InsecureSkipVerify = true
		}
	}
	tr := &http.Transport{
		TLSClientConfig:     f.TLS.Clone(),
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	f.Client = &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f
}

// hasFlag reports whether args set the flag name (-name, --name, -name=v or
// --name=v).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

var textField = regexp.MustCompile(`(?:^| )([a-z_]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// logFields parses a slog line, text or JSON, into its string fields.
func logFields(line string) map[string]string {
	out := make(map[string]string)
	if strings.HasPrefix(line, "{") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			for k, v := range m {
				out[k] = fmt.Sprint(v)
			}
		}
		return out
	}
	for _, m := range textField.FindAllStringSubmatch(line, -1) {
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			if s, err := unquote(v); err == nil {
				v = s
			}
		}
		out[m[1]] = v
	}
	return out
}

func unquote(s string) (string, error) {
	var v string
	err := json.Unmarshal([]byte(s), &v)
	return v, err
}

// URL returns "https://<HTTPS address><path>".
func (f *Flowgate) URL(path string) string { return "https://" + f.HTTPS + path }

// Get sends GET path to the HTTPS listener and returns the response with
// its body read and closed. A transport error fails the test.
func (f *Flowgate) Get(path string) (*http.Response, string) {
	f.t.Helper()
	resp, err := f.Client.Get(f.URL(path))
	if err != nil {
		f.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp, string(body)
}

// AdminGet sends GET path to the admin listener and returns the status code
// and body. A transport error fails the test.
func (f *Flowgate) AdminGet(path string) (int, string) {
	f.t.Helper()
	if f.Admin == "" {
		f.t.Fatalf("admin GET %s: the admin listener is disabled", path)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + f.Admin + path)
	if err != nil {
		f.t.Fatalf("admin GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("admin GET %s: reading the body: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// Status fetches and decodes the admin /status document.
func (f *Flowgate) Status() agent.Status {
	f.t.Helper()
	code, body := f.AdminGet("/status")
	if code != http.StatusOK {
		f.t.Fatalf("admin /status: got status %d; want 200\n%s", code, body)
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		f.t.Fatalf("admin /status: %v\n%s", err, body)
	}
	return st
}

// Logs returns what flowgate printed so far (stdout and stderr).
func (f *Flowgate) Logs() string { return f.p.output() }

// LogMark is a position in the log; WaitLog looks at lines after it.
type LogMark int

// Mark returns the current end of the log.
func (f *Flowgate) Mark() LogMark {
	lines, _ := f.p.snapshot()
	return LogMark(len(lines))
}

// WaitLog waits up to timeout for a log line after mark that contains
// substr and returns it.
func (f *Flowgate) WaitLog(mark LogMark, substr string, timeout time.Duration) (string, error) {
	line, _, err := f.p.waitLine(int(mark), timeout, func(l string) bool { return strings.Contains(l, substr) })
	if err != nil {
		return "", fmt.Errorf("waiting for %q: %w", substr, err)
	}
	return line, nil
}

// WriteConfig replaces the config file atomically (temp file and rename, as
// configuration management tools do). It does not signal flowgate.
func (f *Flowgate) WriteConfig(yaml string) {
	f.t.Helper()
	if f.ConfigPath == "" {
		f.t.Fatal("WriteConfig: flowgate was started without Options.Config")
	}
	tmp := f.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, f.ConfigPath); err != nil {
		f.t.Fatal(err)
	}
}

// Reload sends SIGHUP and waits for flowgate's verdict: nil when it logged
// "configuration reloaded", an error holding the log line when it rejected
// the configuration.
func (f *Flowgate) Reload() error {
	f.t.Helper()
	mark := f.Mark()
	if err := f.Signal(syscall.SIGHUP); err != nil {
		f.t.Fatal(err)
	}
	line, _, err := f.p.waitLine(int(mark), 15*time.Second, func(l string) bool {
		return strings.Contains(l, "configuration reloaded") || strings.Contains(l, "reload rejected")
	})
	if err != nil {
		f.t.Fatalf("reload: %v\n%s", err, f.Logs())
	}
	if strings.Contains(line, "reload rejected") {
		return fmt.Errorf("%s", line)
	}
	return nil
}

// Signal sends sig to the flowgate process.
func (f *Flowgate) Signal(sig os.Signal) error { return f.p.signal(sig) }

// Wait waits up to timeout for flowgate to exit and returns its exit code.
func (f *Flowgate) Wait(timeout time.Duration) (int, error) { return f.p.wait(timeout) }

// Result is the outcome of a flowgate command run to completion.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// RunFlowgate runs a flowgate command (check, version, health…) to
// completion, at most 60 s, with env added to the cleaned environment.
func RunFlowgate(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	bin := BuildFlowgate(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("flowgate %s: %v", strings.Join(args, " "), err)
	}
	return res
}
