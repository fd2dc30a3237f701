package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/agent"
)

// TestMain keeps the tests hermetic: FLOWGATE_* variables of the caller's
// shell must not leak into the configuration under test. With
// FG_TEST_MAIN_ARGS set, the test binary is flowgate itself: main runs with
// those arguments, so that tests can check real exit statuses.
func TestMain(m *testing.M) {
	if raw, ok := os.LookupEnv("FG_TEST_MAIN_ARGS"); ok {
		var args []string
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			panic(err)
		}
		os.Args = append([]string{"flowgate"}, args...)
		main()
		os.Exit(0)
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "FLOWGATE_") {
			os.Unsetenv(k)
		}
	}
	os.Exit(m.Run())
}

// runCLI calls run with buffers.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestRunDispatch(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantErr    string // "" for none
		wantStdout string
		wantStderr string
	}{
		{"no command", nil, "no command given", "", "Usage:"},
		{"unknown command", []string{"serve"}, `unknown command "serve"`, "", "Usage:"},
		{"flag as command", []string{"--upstream", "a:1"}, `unknown command "--upstream"`, "", "Usage:"},
		{"version", []string{"version"}, "", "flowgate dev (", ""},
		{"--version", []string{"--version"}, "", "flowgate dev (", ""},
		{"help", []string{"help"}, "", "flowgate check", ""},
		{"--help", []string{"--help"}, "", "flowgate run", ""},
		{"run with an extra argument", []string{"run", "--upstream", "a:1", "extra"}, `run: unexpected argument "extra"`, "", ""},
		{"check with an extra argument", []string{"check", "now"}, `check: unexpected argument "now"`, "", ""},
		{"unknown flag", []string{"check", "--upstreams", "a:1"}, "flag provided but not defined", "", "-upstreams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := runCLI(t, tt.args...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v; want an error mentioning %q", err, tt.wantErr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestCommandHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"run", "--help"}, []string{"Usage: flowgate run", "-config", "-upstream", "-https-addr", "Precedence", "FLOWGATE_"}},
		{[]string{"run", "-h"}, []string{"Usage: flowgate run"}},
		{[]string{"check", "--help"}, []string{"Usage: flowgate check", "-quiet", "-config", "-upstream"}},
		{[]string{"health", "--help"}, []string{"Usage: flowgate health", "-admin-addr", "-path", "-timeout"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, err := runCLI(t, tt.args...)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("got %v; want flag.ErrHelp", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("usage: missing %q in\n%s", w, stderr)
				}
			}
			if stdout != "" {
				t.Errorf("stdout: got %q; want nothing", stdout)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Run("valid configuration", func(t *testing.T) {
		file := writeConfig(t, "consul:\n  services: [flowable]\n  token: top-secret-token\n")
		stdout, stderr, err := runCLI(t, "check", "--config", file, "--upstream", "10.0.0.1:8090", "--balance", "least_conn")
		if err != nil {
			t.Fatalf("got %v; want nil\nstderr: %s", err, stderr)
		}
		if !strings.Contains(stderr, "configuration is valid") {
			t.Errorf("stderr %q: want it to say the configuration is valid", stderr)
		}
		if strings.Contains(stdout, "top-secret-token") {
			t.Errorf("check printed the Consul token:\n%s", stdout)
		}
		printed, err := agent.Parse([]byte(stdout))
		if err != nil {
			t.Fatalf("the printed configuration does not parse: %v\n%s", err, stdout)
		}
		if printed.Upstreams.Balance != "least_conn" || len(printed.Upstreams.Static) != 1 || printed.Consul.Services[0] != "flowable" {
			t.Errorf("printed configuration does not reflect file and flags:\n%s", stdout)
		}
	})
	t.Run("quiet", func(t *testing.T) {
		stdout, stderr, err := runCLI(t, "check", "--quiet")
		if err != nil || stdout != "" || stderr != "" {
			t.Errorf("got %v, stdout %q, stderr %q; want nil and no output", err, stdout, stderr)
		}
	})
	t.Run("invalid values are all listed", func(t *testing.T) {
		stdout, stderr, err := runCLI(t, "check", "--balance", "random", "--log-level", "loud", "--https-addr", "")
		if !errors.Is(err, errReported) {
			t.Fatalf("got %v; want errReported (the problems are printed)", err)
		}
		for _, key := range []string{"configuration is invalid", "upstreams.balance", "log.level", "listen.https"} {
			if !strings.Contains(stderr, key) {
				t.Errorf("stderr does not mention %q:\n%s", key, stderr)
			}
		}
		if stdout != "" {
			t.Errorf("stdout: got %q; want nothing", stdout)
		}
	})
	t.Run("unknown key in the file", func(t *testing.T) {
		file := writeConfig(t, "listen:\n  htps: \":1\"\n")
		_, _, err := runCLI(t, "check", "--config", file)
		if err == nil || errors.Is(err, errReported) || !strings.Contains(err.Error(), "htps") || !strings.Contains(err.Error(), file) {
			t.Errorf("got %v; want an error naming the file and the key", err)
		}
	})
	t.Run("certificate files that do not load", func(t *testing.T) {
		notPEM := writeConfig(t, "not a certificate")
		_, stderr, err := runCLI(t, "check", "--cert-file", notPEM, "--key-file", notPEM)
		if !errors.Is(err, errReported) || !strings.Contains(stderr, "tls.certificates[0]") {
			t.Errorf("got %v, stderr %q; want errReported naming tls.certificates[0]", err, stderr)
		}
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv("FLOWGATE_BALANCE", "ip_hash")
		stdout, _, err := runCLI(t, "check")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stdout, "balance: ip_hash") {
			t.Errorf("FLOWGATE_BALANCE not applied:\n%s", stdout)
		}
	})
}

// TestExitStatus runs the real main in a child process.
func TestExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	bad := writeConfig(t, "log:\n  level: loud\n")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"check good", []string{"check", "--quiet"}, 0, ""},
		{"check bad", []string{"check", "--config", bad}, 1, "log.level"},
		{"check --help", []string{"check", "--help"}, 0, "Usage: flowgate check"},
		{"unknown command", []string{"bogus"}, 1, `flowgate: unknown command "bogus"`},
		{"run with an extra argument", []string{"run", "extra"}, 1, `flowgate: run: unexpected argument "extra"`},
		{"version", []string{"version"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, _ := json.Marshal(tt.args)
			cmd := exec.CommandContext(t.Context(), os.Args[0])
			cmd.Env = append(os.Environ(), "FG_TEST_MAIN_ARGS="+string(args))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit status: got %d; want %d\nstderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
			if strings.Contains(stderr.String(), "reported") {
				t.Errorf("stderr shows the internal errReported: %q", stderr.String())
			}
		})
	}
}
