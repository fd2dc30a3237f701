package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flowgate/flowgate/discovery"
)

func TestParseEmptyIsDefaults(t *testing.T) {
	for _, in := range []string{"", "\n", "# nothing set\n", "---\n", "~\n", "consul:\n  # services: [flowable]\n"} {
		got, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if diff := cmp.Diff(Default(), got); diff != "" {
			t.Errorf("Parse(%q) differs from Default() (-want +got):\n%s", in, diff)
		}
	}
	def := Default()
	if err := def.Validate(); err != nil {
		t.Errorf("Default() does not validate: %v", err)
	}
}

func TestParseOverlaysDefaults(t *testing.T) {
	got, err := Parse([]byte(`
listen:
  https: ":443"
upstreams:
  static: ["10.0.0.1:8090", "https://10.0.0.2:8443 weight=3"]
  fail_timeout: 30s
http:
  trusted_proxies: [10.0.0.0/8]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Listen.HTTPS = ":443"
	want.Upstreams.Static = []string{"10.0.0.1:8090", "https://10.0.0.2:8443 weight=3"}
	want.Upstreams.FailTimeout = 30 * time.Second
	want.HTTP.TrustedProxies = []string{"10.0.0.0/8"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsed config (-want +got):\n%s", diff)
	}
}

func TestParseStrict(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"unknown key names key and line", "listen:\n  https: \":8443\"\n  htps: \":1\"\n", []string{"line 3", "htps"}},
		{"unknown top-level key", "log:\n  level: info\nupstream:\n  - a:1\n", []string{"line 3", "upstream"}},
		{"wrong type", "upstreams:\n  max_fails: many\n", []string{"line 2", "many"}},
		{"duration without unit", "upstreams:\n  fail_timeout: 5\n", []string{"line 2", "Duration"}},
		{"list where a scalar belongs", "listen:\n  https: [a, b]\n", []string{"line 2"}},
		{"scalar where a mapping belongs", "listen: 5\n", []string{"line 1"}},
		{"duplicate key", "upstreams:\n  static: [a:1]\n  static: [b:2]\n", []string{"line 3", "static"}},
		{"two documents", "log:\n  level: debug\n---\nlog:\n  level: info\n", []string{"more than one YAML document"}},
		{"not YAML", "listen: {https: \":1\"\n", []string{"line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q): got nil error; want one", tt.in)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.HasPrefix(err.Error(), "yaml:") {
				t.Errorf("error %q starts with the library's prefix", err)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("log:\n  level: debug\n"), 0o600)
	os.WriteFile(bad, []byte("log:\n  levle: debug\n"), 0o600)
	cfg, err := LoadFile(good)
	if err != nil || cfg.Log.Level != "debug" {
		t.Errorf("LoadFile(good): got level %q, %v; want debug, nil", cfg.Log.Level, err)
	}
	if _, err := LoadFile(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "levle") {
		t.Errorf("LoadFile(bad): got %v; want an error naming the file and the key", err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := LoadFile(missing); err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(missing): got %v; want a not-exist error naming the file", err)
	}
}

// fieldKeys lists the keys of the FieldErrors joined in err, and the texts
// of any other errors.
func fieldKeys(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, fieldKeys(e)...)
		}
		return out
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return []string{fe.Key}
	}
	return []string{"(no key) " + err.Error()}
}

func TestValidateNamesEachKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "exists.pem")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		key    string
		mutate func(c *Config)
		text   string // a substring of the message
	}{
		{"listen.https", func(c *Config) { c.Listen.HTTPS = "" }, "required"},
		{"listen.https", func(c *Config) { c.Listen.HTTPS = "8443" }, "HOST:PORT"},
		{"listen.https", func(c *Config) { c.Listen.HTTPS = ":99999" }, "port"},
		{"listen.http", func(c *Config) { c.Listen.HTTP = "bad host!:80" }, "bad host"},
		{"listen.admin", func(c *Config) { c.Listen.Admin = "localhost" }, "HOST:PORT"},
		{"listen.public_https_port", func(c *Config) { c.Listen.PublicHTTPSPort = 70000 }, "70000"},
		{"listen.public_https_port", func(c *Config) { c.Listen.PublicHTTPSPort = -1 }, "-1"},
		{"server_names[1]", func(c *Config) { c.ServerNames = []string{"ok.example", "not a name"} }, "not a name"},
		{"unknown_host", func(c *Config) { c.UnknownHost = "drop" }, "redirect or reject"},
		{"tls.min_version", func(c *Config) { c.TLS.MinVersion = "1.1" }, "RFC 8996"},
		{"tls.min_version", func(c *Config) { c.TLS.MinVersion = "1.4" }, "1.2 or 1.3"},
		{"tls.certificates[0]", func(c *Config) { c.TLS.Certificates = []CertificateFiles{{CertFile: file}} }, "both required"},
		{"tls.certificates[0].cert_file", func(c *Config) { c.TLS.Certificates = []CertificateFiles{{CertFile: missing, KeyFile: file}} }, missing},
		{"tls.certificates[1].key_file", func(c *Config) {
			c.TLS.Certificates = []CertificateFiles{{CertFile: file, KeyFile: file}, {CertFile: file, KeyFile: missing}}
		}, missing},
		{"tls.client_ca_file", func(c *Config) { c.TLS.ClientCAFile = missing }, missing},
		{"tls.client_auth", func(c *Config) { c.TLS.ClientAuth = "maybe" }, "request or require"},
		{"tls.reload_interval", func(c *Config) { c.TLS.ReloadInterval = 0 }, "positive"},
		{"tls.expiry_warning", func(c *Config) { c.TLS.ExpiryWarning = -time.Hour }, "negative"},
		{"tls.hsts_max_age", func(c *Config) { c.TLS.HSTSMaxAge = -time.Hour }, "negative"},
		{"issuer.mode", func(c *Config) { c.Issuer.Mode = "acme" }, "ca or self_signed"},
		{"issuer.key_type", func(c *Config) { c.Issuer.KeyType = "ed448" }, "p256"},
		{"issuer.ca_cert_file", func(c *Config) { c.Issuer.CACertFile = file }, "go together"},
		{"issuer.ca_key_file", func(c *Config) { c.Issuer.CACertFile, c.Issuer.CAKeyFile = file, missing }, missing},
		{"issuer.leaf_lifetime", func(c *Config) { c.Issuer.LeafLifetime = 0 }, "outside"},
		{"issuer.leaf_lifetime", func(c *Config) { c.Issuer.LeafLifetime = 100 * 365 * 24 * time.Hour }, "outside"},
		{"issuer.renew_before", func(c *Config) { c.Issuer.RenewBefore = c.Issuer.LeafLifetime }, "below leaf_lifetime"},
		{"issuer.renew_before", func(c *Config) { c.Issuer.RenewBefore = -time.Hour }, "above 0"},
		{"issuer.hosts[0]", func(c *Config) { c.Issuer.Hosts = []string{"a b"} }, `"a b"`},
		{"upstreams.static[0]", func(c *Config) { c.Upstreams.Static = []string{"http://node/path"} }, "node/path"},
		{"upstreams.static[1]", func(c *Config) { c.Upstreams.Static = []string{"a:1", "b:2 weight=0"} }, "weight=N"},
		{"upstreams.balance", func(c *Config) { c.Upstreams.Balance = "random" }, "least_conn"},
		{"upstreams.sticky_cookie", func(c *Config) { c.Upstreams.StickyCookie = "a b" }, "cookie name"},
		{"upstreams.max_fails", func(c *Config) { c.Upstreams.MaxFails = -1 }, "negative"},
		{"upstreams.fail_timeout", func(c *Config) { c.Upstreams.FailTimeout = 0 }, "positive"},
		{"upstreams.max_attempts", func(c *Config) { c.Upstreams.MaxAttempts = 0 }, "at least 1"},
		{"upstreams.drain_timeout", func(c *Config) { c.Upstreams.DrainTimeout = -time.Second }, "negative"},
		{"upstreams.slow_start", func(c *Config) { c.Upstreams.SlowStart = -time.Second }, "negative"},
		{"upstreams.slow_start", func(c *Config) { c.Upstreams.SlowStart, c.Upstreams.Balance = time.Minute, "ip_hash" }, "not with balance ip_hash"},
		{"upstreams.dial_timeout", func(c *Config) { c.Upstreams.DialTimeout = 0 }, "positive"},
		{"upstreams.response_header_timeout", func(c *Config) { c.Upstreams.ResponseHeaderTimeout = 0 }, "positive"},
		{"upstreams.idle_conn_timeout", func(c *Config) { c.Upstreams.IdleConnTimeout = 0 }, "positive"},
		{"upstreams.keepalive", func(c *Config) { c.Upstreams.KeepAlive = 0 }, "at least 1"},
		{"upstreams.health_check.path", func(c *Config) { c.Upstreams.HealthCheck.Path = "actuator/health" }, "/actuator/health"},
		{"http.request_id_header", func(c *Config) { c.HTTP.RequestIDHeader = "X-Forwarded-For" }, "X-Request-ID"},
		{"listen.proxy_protocol_from", func(c *Config) { c.Listen.ProxyProtocolFrom = []string{"lb.internal"} }, "CIDRs"},
		{"http.response_headers", func(c *Config) { c.HTTP.ResponseHeaders = map[string]string{"Content-Length": "0"} }, "frames the response"},
		{"http.response_headers", func(c *Config) {
			c.HTTP.RequestIDHeader, c.HTTP.ResponseHeaders = "X-Request-ID", map[string]string{"x-request-id": ""}
		}, "request_id_header"},
		{"http.restricted_paths[1]", func(c *Config) {
			c.HTTP.RestrictedPaths = []RestrictedPath{{Path: "/a", AllowFrom: []string{"10.0.0.0/8"}}, {Path: "/b"}}
		}, "no network to allow"},
		{"http.restricted_paths[0]", func(c *Config) {
			c.HTTP.RestrictedPaths = []RestrictedPath{{Path: "/a", AllowFrom: []string{"office"}}}
		}, "invalid CIDR address: office"},
		{"http.request_id_header", func(c *Config) { c.HTTP.RequestIDHeader = "X Request" }, "not a header name"},
		{"http.compression", func(c *Config) { c.HTTP.Compression.Level = 11 }, "level 11: want 1 (fastest) to 9"},
		{"http.error_pages", func(c *Config) { c.HTTP.ErrorPages = map[int]string{503: filepath.Join(dir, "missing.html")} }, "missing.html: no such file"},
		{"http.error_pages", func(c *Config) { c.HTTP.ErrorPages = map[int]string{404: file} }, "only they can have a page"},
		{"http.error_pages", func(c *Config) { c.HTTP.ErrorPages = map[int]string{503: file} }, "not an .html file"},
		{"http.compression", func(c *Config) { c.HTTP.Compression.MaxConcurrent = 0 }, "max_concurrent 0: want at least 1"},
		{"http.compression", func(c *Config) { c.HTTP.Compression.Enabled, c.HTTP.Compression.Types = true, nil }, "types: empty"},
		{"http.compression", func(c *Config) { c.HTTP.Compression.Types = []string{"text/html", "javascript"} }, `"javascript" is not a media type`},
		{"http.response_headers", func(c *Config) { c.HTTP.ResponseHeaders = map[string]string{"Vary": "Origin"} }, "http.compression"},
		{"upstreams.health_check.path", func(c *Config) { c.Upstreams.HealthCheck.Path = "http://node/health" }, "not a request path"},
		{"upstreams.health_check.path", func(c *Config) { c.Upstreams.HealthCheck.Path = "/a b" }, "not a request path"},
		{"upstreams.health_check.interval", func(c *Config) { c.Upstreams.HealthCheck.Interval = 0 }, "positive"},
		{"upstreams.health_check.timeout", func(c *Config) { c.Upstreams.HealthCheck.Timeout = -time.Second }, "positive"},
		{"upstreams.health_check.timeout", func(c *Config) { c.Upstreams.HealthCheck.Timeout = 10 * time.Second }, "longer than the interval"},
		{"upstreams.health_check.fails", func(c *Config) { c.Upstreams.HealthCheck.Fails = 0 }, "at least 1"},
		{"upstreams.health_check.passes", func(c *Config) { c.Upstreams.HealthCheck.Passes = -1 }, "at least 1"},
		{"upstreams.tls.ca_file", func(c *Config) { c.Upstreams.TLS.CAFile = missing }, missing},
		{"upstreams.tls.cert_file", func(c *Config) { c.Upstreams.TLS.KeyFile = file }, "go together"},
		{"consul.services[0]", func(c *Config) { c.Consul.Services = []string{"flowable/ui"} }, "service name"},
		{"consul.token_file", func(c *Config) { c.Consul.TokenFile = missing }, missing},
		{"consul.register.check_address", func(c *Config) { c.Consul.Register.Enabled, c.Listen.Admin = true, "" }, "admin"},
		{"http.trusted_proxies", func(c *Config) { c.HTTP.TrustedProxies = []string{"10.0.0.0/99"} }, "CIDR"},
		{"http.blocked_paths", func(c *Config) { c.HTTP.BlockedPaths = []string{"actuator"} }, "start with /"},
		{"http.read_header_timeout", func(c *Config) { c.HTTP.ReadHeaderTimeout = 0 }, "positive"},
		{"http.idle_timeout", func(c *Config) { c.HTTP.IdleTimeout = 0 }, "positive"},
		{"http.client_body_timeout", func(c *Config) { c.HTTP.ClientBodyTimeout = -time.Second }, "negative"},
		{"http.send_timeout", func(c *Config) { c.HTTP.SendTimeout = -time.Second }, "negative"},
		{"http.max_header_bytes", func(c *Config) { c.HTTP.MaxHeaderBytes = 1024 }, "4096"},
		{"http.max_body_bytes", func(c *Config) { c.HTTP.MaxBodyBytes = -1 }, "negative"},
		{"http.max_websockets", func(c *Config) { c.HTTP.MaxWebSockets = -1 }, "negative"},
		{"http.shutdown_timeout", func(c *Config) { c.HTTP.ShutdownTimeout = 0 }, "positive"},
		{"log.format", func(c *Config) { c.Log.Format = "xml" }, "text or json"},
		{"log.level", func(c *Config) { c.Log.Level = "trace" }, "debug"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"/"+tt.text, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if diff := cmp.Diff([]string{tt.key}, fieldKeys(err)); diff != "" {
				t.Fatalf("keys of the errors (-want +got):\n%s\nerror: %v", diff, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.key+": ") || !strings.Contains(msg, tt.text) {
				t.Errorf("message %q: want it to start with %q and mention %q", msg, tt.key+": ", tt.text)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Log.Level = "loud"
	c.Upstreams.Balance = "random"
	c.Listen.HTTPS = ""
	got := fieldKeys(c.Validate())
	want := []string{"listen.https", "upstreams.balance", "log.level"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

func TestValidateAccepts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.pem")
	os.WriteFile(file, []byte("x"), 0o600)
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"issuer settings ignored with certificate files", func(c *Config) {
			c.TLS.Certificates = []CertificateFiles{{CertFile: file, KeyFile: file}}
			c.Issuer.Mode, c.Issuer.KeyType, c.Issuer.LeafLifetime = "bogus", "bogus", 0
		}},
		{"consul instead of static upstreams", func(c *Config) {
			c.Upstreams.Static = nil
			c.Consul.Services = []string{"flowable"}
		}},
		{"listeners disabled", func(c *Config) { c.Listen.HTTP, c.Listen.Admin = "", "" }},
		{"wildcard, IPv4 and IPv6 server names", func(c *Config) {
			c.ServerNames = []string{"*.apps.example.com", "flowable.example.com.", "10.0.0.1", "::1"}
		}},
		{"IPv6 listener", func(c *Config) { c.Listen.HTTPS = "[::1]:8443" }},
		{"port 0 listeners", func(c *Config) { c.Listen.HTTPS, c.Listen.HTTP, c.Listen.Admin = "127.0.0.1:0", ":0", "localhost:0" }},
		{"weights", func(c *Config) { c.Upstreams.Static = []string{"a:1 weight=1", "https://b:2 weight=1000"} }},
		{"TLS 1.3 only", func(c *Config) { c.TLS.MinVersion = "1.3" }},
		{"drain 0 keeps sockets", func(c *Config) { c.Upstreams.DrainTimeout = 0 }},
		{"max_fails 0 disables passive health", func(c *Config) { c.Upstreams.MaxFails = 0 }},
		{"request IDs", func(c *Config) { c.HTTP.RequestIDHeader = "x-correlation-id" }},
		{"response headers", func(c *Config) {
			c.HTTP.ResponseHeaders = map[string]string{"X-Frame-Options": "SAMEORIGIN", "Server": ""}
		}},
		{"PROXY protocol", func(c *Config) { c.Listen.ProxyProtocolFrom = []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"} }},
		{"restricted paths", func(c *Config) {
			c.HTTP.RestrictedPaths = []RestrictedPath{{Path: "/flowable-admin", AllowFrom: []string{"10.0.0.0/8", "::1"}}}
		}},
		{"health checks with a query", func(c *Config) { c.Upstreams.HealthCheck.Path = "/actuator/health/readiness?probe=flowgate" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v; want nil", err)
			}
		})
	}
}

func TestStaticUpstreams(t *testing.T) {
	tests := []struct {
		in   string
		want discovery.Upstream
		err  string
	}{
		{in: "127.0.0.1:8090", want: discovery.Upstream{Addr: "127.0.0.1:8090", Weight: 1}},
		{in: "http://node", want: discovery.Upstream{Addr: "node:80", Weight: 1}},
		{in: "https://node", want: discovery.Upstream{Addr: "node:443", TLS: true, Weight: 1}},
		{in: "https://10.0.0.2:8443 weight=5", want: discovery.Upstream{Addr: "10.0.0.2:8443", TLS: true, Weight: 5}},
		{in: "  [::1]:8090   weight=1000  ", want: discovery.Upstream{Addr: "[::1]:8090", Weight: 1000}},
		{in: "a:1 weight=0", err: "weight=N"},
		{in: "a:1 weight=1001", err: "weight=N"},
		{in: "a:1 weight=-2", err: "weight=N"},
		{in: "a:1 weight=two", err: "weight=N"},
		{in: "a:1 weight=", err: "weight=N"},
		{in: "a:1 backup", err: "backup"},
		{in: "a:1 max_fails=3", err: "max_fails=3"},
		{in: "a", err: "upstreams.static[0]"},
		{in: "ftp://a:1", err: "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c := Default()
			c.Upstreams.Static = []string{tt.in}
			got, err := c.StaticUpstreams()
			if tt.err != "" {
				var fe *FieldError
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &fe) || fe.Key != "upstreams.static[0]" {
					t.Fatalf("got %v, %v; want a FieldError for upstreams.static[0] mentioning %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]discovery.Upstream{tt.want}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedactedHidesConsulToken(t *testing.T) {
	c := Default()
	c.Consul.Services = []string{"flowable"}
	c.Consul.Token = "8f2c-secret-acl-token"
	c.Consul.TokenFile = "/etc/flowgate/consul.token"
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "8f2c-secret-acl-token") {
		t.Fatalf("Redacted output contains the token:\n%s", out)
	}
	if c.Consul.Token != "8f2c-secret-acl-token" {
		t.Error("Redacted changed the configuration it was called on")
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("the redacted output does not parse: %v\n%s", err, out)
	}
	if back.Consul.Token != "REDACTED" {
		t.Errorf("token in the redacted output: got %q; want REDACTED", back.Consul.Token)
	}
	back.Consul.Token = c.Consul.Token
	if diff := cmp.Diff(c, back, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("redacted output does not round-trip (-want +got):\n%s", diff)
	}
	// Durations print as durations, not nanoseconds.
	if !strings.Contains(string(out), "fail_timeout: 10s") {
		t.Errorf("redacted output does not show fail_timeout as 10s:\n%s", out)
	}

	empty := Default()
	out, _ = empty.Redacted()
	if strings.Contains(string(out), "REDACTED") {
		t.Error("an empty token is shown as REDACTED; want it left empty")
	}
}
