package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowgate/flowgate/agent"
)

// writeConfig writes a YAML configuration file for a test.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flowgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadWith parses args as `flowgate run` would, with env as the whole
// environment, and returns the effective configuration.
func loadWith(t *testing.T, args []string, env map[string]string) (agent.Config, error) {
	t.Helper()
	fs, cf := newConfigFlagSet("run", "test", io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	cf.lookupEnv = func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
	return cf.load()
}

func TestPrecedence(t *testing.T) {
	file := writeConfig(t, `
listen:
  https: ":1001"
upstreams:
  static: ["file-a:1", "file-b:2"]
`)
	const (
		envAddr  = ":1002"
		flagAddr = ":1003"
	)
	fileList := []string{"file-a:1", "file-b:2"}
	envList := []string{"env-a:1", "env-b:2"}
	flagList := []string{"flag-a:1", "flag-b:2"}
	def := agent.Default()
	tests := []struct {
		name            string
		file, env, flag bool
		wantAddr        string
		wantList        []string
	}{
		{"defaults", false, false, false, def.Listen.HTTPS, def.Upstreams.Static},
		{"file over defaults", true, false, false, ":1001", fileList},
		{"env over defaults", false, true, false, envAddr, envList},
		{"env over file", true, true, false, envAddr, envList},
		{"flags over defaults", false, false, true, flagAddr, flagList},
		{"flags over file", true, false, true, flagAddr, flagList},
		{"flags over env", false, true, true, flagAddr, flagList},
		{"flags over env over file", true, true, true, flagAddr, flagList},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args []string
			env := map[string]string{}
			if tt.file {
				args = append(args, "--config", file)
			}
			if tt.env {
				env["FLOWGATE_HTTPS_ADDR"] = envAddr
				env["FLOWGATE_UPSTREAM"] = " env-a:1, env-b:2 "
			}
			if tt.flag {
				args = append(args, "--https-addr", flagAddr, "--upstream", "flag-a:1", "--upstream", "flag-b:2")
			}
			cfg, err := loadWith(t, args, env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen.HTTPS != tt.wantAddr {
				t.Errorf("listen.https: got %q; want %q", cfg.Listen.HTTPS, tt.wantAddr)
			}
			if diff := cmp.Diff(tt.wantList, cfg.Upstreams.Static); diff != "" {
				t.Errorf("upstreams.static (-want +got):\n%s", diff)
			}
			// Untouched settings keep their defaults at every layer.
			if cfg.Upstreams.Balance != def.Upstreams.Balance || cfg.Log.Level != def.Log.Level {
				t.Errorf("untouched settings changed: balance %q, log level %q", cfg.Upstreams.Balance, cfg.Log.Level)
			}
		})
	}
}

func TestConfigFileFromEnvironment(t *testing.T) {
	fromEnv := writeConfig(t, "log:\n  level: warn\n")
	fromFlag := writeConfig(t, "log:\n  level: error\n")
	cfg, err := loadWith(t, nil, map[string]string{"FLOWGATE_CONFIG": fromEnv})
	if err != nil || cfg.Log.Level != "warn" {
		t.Errorf("FLOWGATE_CONFIG: got level %q, %v; want warn", cfg.Log.Level, err)
	}
	cfg, err = loadWith(t, []string{"--config", fromFlag}, map[string]string{"FLOWGATE_CONFIG": fromEnv})
	if err != nil || cfg.Log.Level != "error" {
		t.Errorf("--config with FLOWGATE_CONFIG set: got level %q, %v; want error (the flag wins)", cfg.Log.Level, err)
	}
}

func TestLoadIsRepeatable(t *testing.T) {
	// SIGHUP calls load again: the file is re-read, the flags re-applied.
	file := writeConfig(t, "log:\n  level: warn\nupstreams:\n  balance: least_conn\n")
	fs, cf := newConfigFlagSet("run", "test", io.Discard)
	if err := fs.Parse([]string{"--config", file, "--balance", "ip_hash"}); err != nil {
		t.Fatal(err)
	}
	cf.lookupEnv = func(string) (string, bool) { return "", false }
	first, err := cf.load()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("log:\n  level: debug\nupstreams:\n  balance: round_robin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	second, err := cf.load()
	if err != nil {
		t.Fatal(err)
	}
	if first.Log.Level != "warn" || second.Log.Level != "debug" {
		t.Errorf("log.level: got %q then %q; want warn then debug (file re-read)", first.Log.Level, second.Log.Level)
	}
	if first.Upstreams.Balance != "ip_hash" || second.Upstreams.Balance != "ip_hash" {
		t.Errorf("balance: got %q then %q; want ip_hash both times (flag re-applied)", first.Upstreams.Balance, second.Upstreams.Balance)
	}
}

func TestFlagKinds(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(c agent.Config) bool
		want  string
	}{
		{"bool flag without value", []string{"--access-log"}, nil, func(c agent.Config) bool { return c.Log.AccessLog }, "access_log true"},
		{"bool flag =false over env", []string{"--access-log=false"}, map[string]string{"FLOWGATE_ACCESS_LOG": "true"}, func(c agent.Config) bool { return !c.Log.AccessLog }, "access_log false"},
		{"bool env", nil, map[string]string{"FLOWGATE_CONSUL_REGISTER": "1"}, func(c agent.Config) bool { return c.Consul.Register.Enabled }, "register true"},
		{"duration flag", []string{"--leaf-lifetime", "24h", "--renew-before", "8h"}, nil, func(c agent.Config) bool {
			return c.Issuer.LeafLifetime == 24*time.Hour && c.Issuer.RenewBefore == 8*time.Hour
		}, "24h and 8h"},
		{"scalar flag repeated: the last wins", []string{"--balance", "ip_hash", "--balance", "least_conn"}, nil, func(c agent.Config) bool { return c.Upstreams.Balance == "least_conn" }, "least_conn"},
		{"empty env scalar disables a listener", nil, map[string]string{"FLOWGATE_HTTP_ADDR": ""}, func(c agent.Config) bool { return c.Listen.HTTP == "" }, "listen.http empty"},
		{"env list drops empty items", nil, map[string]string{"FLOWGATE_TRUSTED_PROXY": "10.0.0.0/8,, ::1 ,"}, func(c agent.Config) bool {
			return cmp.Equal(c.HTTP.TrustedProxies, []string{"10.0.0.0/8", "::1"})
		}, "[10.0.0.0/8 ::1]"},
		{"cert and key files", []string{"--cert-file", "/c.pem", "--key-file", "/k.pem"}, nil, func(c agent.Config) bool {
			return cmp.Equal(c.TLS.Certificates, []agent.CertificateFiles{{CertFile: "/c.pem", KeyFile: "/k.pem"}})
		}, "one pair"},
		{"consul lists", []string{"--consul-service", "flowable", "--consul-tag", "prod", "--consul-tag", "eu"}, map[string]string{"FLOWGATE_CONSUL_ADDR": "10.0.0.9:8500"}, func(c agent.Config) bool {
			return cmp.Equal(c.Consul.Services, []string{"flowable"}) && cmp.Equal(c.Consul.Tags, []string{"prod", "eu"}) && c.Consul.Address == "10.0.0.9:8500"
		}, "services, tags and address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadWith(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("got %+v; want %s", cfg, tt.want)
			}
		})
	}
}

func TestFlagAndEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad duration flag", []string{"--leaf-lifetime", "a month"}, nil, "flag --leaf-lifetime"},
		{"bad duration env", nil, map[string]string{"FLOWGATE_RENEW_BEFORE": "soon"}, "environment FLOWGATE_RENEW_BEFORE"},
		{"bad bool env", nil, map[string]string{"FLOWGATE_ACCESS_LOG": "yes please"}, "environment FLOWGATE_ACCESS_LOG"},
		{"bad bool flag", []string{"--consul-register=maybe"}, nil, "flag --consul-register"},
		{"missing config file", []string{"--config", "/nonexistent/flowgate.yaml"}, nil, "/nonexistent/flowgate.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadWith(t, tt.args, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestSettingsNames(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range settings {
		if seen[s.name] {
			t.Errorf("flag %q defined twice", s.name)
		}
		seen[s.name] = true
		env := envName(s.name)
		if want := "FLOWGATE_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_")); env != want {
			t.Errorf("envName(%q) = %q; want %q", s.name, env, want)
		}
		if s.usage == "" || s.apply == nil {
			t.Errorf("flag %q: missing usage or apply", s.name)
		}
	}
	if envName("https-addr") != "FLOWGATE_HTTPS_ADDR" {
		t.Errorf("envName(https-addr) = %q; want FLOWGATE_HTTPS_ADDR", envName("https-addr"))
	}
}
