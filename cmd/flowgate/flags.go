package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/agent"
)

// setting is one command-line flag, also settable as FLOWGATE_<NAME>.
type setting struct {
	name   string
	usage  string
	list   bool // repeatable; the env var takes a comma-separated list
	isBool bool
	apply  func(c *agent.Config, v []string) error
}

func one(f func(c *agent.Config, v string) error) func(*agent.Config, []string) error {
	return func(c *agent.Config, v []string) error { return f(c, v[len(v)-1]) }
}

func setStr(p func(c *agent.Config) *string) func(*agent.Config, []string) error {
	return one(func(c *agent.Config, v string) error { *p(c) = v; return nil })
}

func setList(p func(c *agent.Config) *[]string) func(*agent.Config, []string) error {
	return func(c *agent.Config, v []string) error { *p(c) = v; return nil }
}

func setDuration(p func(c *agent.Config) *time.Duration) func(*agent.Config, []string) error {
	return one(func(c *agent.Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 720h or 30m", v)
		}
		*p(c) = d
		return nil
	})
}

func setBool(p func(c *agent.Config) *bool) func(*agent.Config, []string) error {
	return one(func(c *agent.Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*p(c) = b
		return nil
	})
}

// settings are the flags of run and check, in help order.
var settings = []setting{
	{name: "https-addr", usage: "HTTPS listener `ADDR` (default :8443)", apply: setStr(func(c *agent.Config) *string { return &c.Listen.HTTPS })},
	{name: "http-addr", usage: "HTTP redirect listener `ADDR` (default :8080; empty disables)", apply: setStr(func(c *agent.Config) *string { return &c.Listen.HTTP })},
	{name: "admin-addr", usage: "admin listener `ADDR` for metrics, health and status (default 127.0.0.1:9100; empty disables)", apply: setStr(func(c *agent.Config) *string { return &c.Listen.Admin })},
	{name: "public-https-port", usage: "HTTPS `PORT` clients see, for redirects and X-Forwarded-Port when a NAT or container maps ports (default: the port of --https-addr)", apply: one(func(c *agent.Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a port number", v)
		}
		c.Listen.PublicHTTPSPort = n
		return nil
	})},
	{name: "upstream", list: true, usage: "upstream `HOST:PORT|URL`, repeatable (default 127.0.0.1:8090; https:// means TLS to it)", apply: setList(func(c *agent.Config) *[]string { return &c.Upstreams.Static })},
	{name: "server-name", list: true, usage: "a host `NAME` this proxy answers for, repeatable", apply: setList(func(c *agent.Config) *[]string { return &c.ServerNames })},
	{name: "cert-file", usage: "certificate chain PEM `FILE` (leaf first); watched and reloaded", apply: one(func(c *agent.Config, v string) error {
		ensureCert(c)
		c.TLS.Certificates[0].CertFile = v
		return nil
	})},
	{name: "key-file", usage: "private key PEM `FILE` of --cert-file", apply: one(func(c *agent.Config, v string) error {
		ensureCert(c)
		c.TLS.Certificates[0].KeyFile = v
		return nil
	})},
	{name: "state-dir", usage: "`DIR` where flowgate keeps what it generates (the built-in CA)", apply: setStr(func(c *agent.Config) *string { return &c.StateDir })},
	{name: "balance", usage: "load balancing `METHOD`: round_robin, least_conn or ip_hash", apply: setStr(func(c *agent.Config) *string { return &c.Upstreams.Balance })},
	{name: "trusted-proxy", list: true, usage: "`CIDR` whose X-Forwarded-For is kept, repeatable", apply: setList(func(c *agent.Config) *[]string { return &c.HTTP.TrustedProxies })},
	{name: "log-format", usage: "log `FORMAT`: text or json", apply: setStr(func(c *agent.Config) *string { return &c.Log.Format })},
	{name: "log-level", usage: "log `LEVEL`: debug, info, warn or error", apply: setStr(func(c *agent.Config) *string { return &c.Log.Level })},
	{name: "access-log", isBool: true, usage: "log one line per request", apply: setBool(func(c *agent.Config) *bool { return &c.Log.AccessLog })},
	{name: "leaf-lifetime", usage: "validity `DURATION` of the built-in issuer's certificates (default 720h)", apply: setDuration(func(c *agent.Config) *time.Duration { return &c.Issuer.LeafLifetime })},
	{name: "renew-before", usage: "renew issued certificates this `DURATION` before expiry (default: a third of the lifetime)", apply: setDuration(func(c *agent.Config) *time.Duration { return &c.Issuer.RenewBefore })},
	{name: "consul-service", list: true, usage: "Consul service `NAME` of the Flowable nodes, repeatable; enables Consul discovery", apply: setList(func(c *agent.Config) *[]string { return &c.Consul.Services })},
	{name: "consul-tag", list: true, usage: "`TAG` every discovered instance must carry, repeatable", apply: setList(func(c *agent.Config) *[]string { return &c.Consul.Tags })},
	{name: "consul-addr", usage: "Consul HTTP `ADDR` (default CONSUL_HTTP_ADDR or 127.0.0.1:8500)", apply: setStr(func(c *agent.Config) *string { return &c.Consul.Address })},
	{name: "consul-datacenter", usage: "Consul `DATACENTER` to query", apply: setStr(func(c *agent.Config) *string { return &c.Consul.Datacenter })},
	{name: "consul-register", isBool: true, usage: "register flowgate itself in Consul", apply: setBool(func(c *agent.Config) *bool { return &c.Consul.Register.Enabled })},
}

func ensureCert(c *agent.Config) {
	if len(c.TLS.Certificates) == 0 {
		c.TLS.Certificates = []agent.CertificateFiles{{}}
	}
}

// envName is the environment variable of a flag: FLOWGATE_ + upper case,
// dashes to underscores.
func envName(flagName string) string {
	return "FLOWGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// configFlags holds what run and check parsed: the config file and the flag
// values, re-applied on every reload.
type configFlags struct {
	configFile string
	values     map[string][]string
	lookupEnv  func(string) (string, bool)
}

// flagValue collects a flag's values in order.
type flagValue struct {
	s      *setting
	values map[string][]string
}

func (f *flagValue) String() string { return "" }
func (f *flagValue) Set(v string) error {
	if f.s.list {
		f.values[f.s.name] = append(f.values[f.s.name], v)
	} else {
		f.values[f.s.name] = []string{v}
	}
	return nil
}
func (f *flagValue) IsBoolFlag() bool { return f.s.isBool }

// newConfigFlagSet defines the shared flags of run and check.
func newConfigFlagSet(name, summary string, stderr io.Writer) (*flag.FlagSet, *configFlags) {
	cf := &configFlags{values: make(map[string][]string), lookupEnv: os.LookupEnv}
	fs := flag.NewFlagSet("flowgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cf.configFile, "config", "", "YAML configuration `FILE` (strict: unknown keys are errors)")
	for i := range settings {
		s := &settings[i]
		fs.Var(&flagValue{s: s, values: cf.values}, s.name, s.usage)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: flowgate %s [flags]\n\n%s\n\nPrecedence: flags over FLOWGATE_<FLAG> environment variables (lists comma-separated) over the config file over the embedded defaults.\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs, cf
}

// load builds the effective configuration: defaults, then the file, then
// the environment, then the flags.
func (cf *configFlags) load() (agent.Config, error) {
	file := cf.configFile
	if file == "" {
		file, _ = cf.lookupEnv("FLOWGATE_CONFIG")
	}
	cfg := agent.Default()
	if file != "" {
		var err error
		if cfg, err = agent.LoadFile(file); err != nil {
			return agent.Config{}, err
		}
	}
	for i := range settings {
		s := &settings[i]
		env := envName(s.name)
		v, ok := cf.lookupEnv(env)
		if !ok {
			continue
		}
		vals := []string{v}
		if s.list {
			vals = splitList(v)
		}
		if err := s.apply(&cfg, vals); err != nil {
			return agent.Config{}, fmt.Errorf("environment %s: %w", env, err)
		}
	}
	for i := range settings {
		s := &settings[i]
		if vals, ok := cf.values[s.name]; ok {
			if err := s.apply(&cfg, vals); err != nil {
				return agent.Config{}, fmt.Errorf("flag --%s: %w", s.name, err)
			}
		}
	}
	return cfg, nil
}

func splitList(v string) []string {
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
