package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParseConfig feeds any bytes to Parse: it never panics, and a
// configuration that Validate accepts prints (Redacted) to YAML that parses
// back to the same configuration, token aside, and validates again.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"listen:\n  https: \":8443\"\n  http: \"\"\n",
		"upstreams:\n  static: [\"10.0.0.1:8090\", \"https://10.0.0.2:8443 weight=3\"]\n  balance: ip_hash\n  sticky_cookie: FGNODE\n",
		"consul:\n  services: [flowable]\n  token: \"s3cr3t\"\nupstreams:\n  static: []\n",
		"server_names: [\"flowable.example.com\", \"*.apps.example.com\"]\nunknown_host: reject\n",
		"tls:\n  min_version: \"1.3\"\n  hsts_max_age: 8760h\nissuer:\n  mode: self_signed\n  key_type: rsa2048\n  leaf_lifetime: 24h\n  renew_before: 8h\n",
		"http:\n  trusted_proxies: [10.0.0.0/8, \"::1\"]\n  blocked_paths: [/actuator, /admin]\n  allowed_paths: [/actuator/health]\n",
		"log: {format: json, level: debug, access_log: true}\n",
		"upstreams:\n  fail_timeout: 5\n",
		"a: 1\n---\nb: 2\n",
		"listen: &a {https: \":1\"}\nadmin: *a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		if cfg.Validate() != nil {
			return
		}
		out, err := cfg.Redacted()
		if err != nil {
			t.Fatalf("Redacted of a valid configuration: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("the redacted output does not parse: %v\n%s", err, out)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("the redacted output does not validate: %v\n%s", err, out)
		}
		if cfg.Consul.Token != "" {
			if back.Consul.Token != "REDACTED" {
				t.Fatalf("token in the redacted output: got %q; want REDACTED", back.Consul.Token)
			}
			back.Consul.Token = cfg.Consul.Token
		}
		// The printed configuration names the implicit default upstream.
		cfg.Upstreams.Static = cfg.staticList()
		if diff := cmp.Diff(cfg, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("the redacted output parses to another configuration (-want +got):\n%s\n%s", diff, out)
		}
	})
}
