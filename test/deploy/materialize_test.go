package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/flowgate/flowgate/agent"
	"github.com/flowgate/flowgate/test/harness"
)

// materialized is a configuration written to a temp dir together with the
// files it names.
type materialized struct {
	// path is the configuration file.
	path string
	// dir replaced the rewritten prefixes.
	dir string
	// ca signed the certificates written for the configuration.
	ca *harness.TestCA
}

// materialize makes a configuration from the documentation checkable on
// this machine: it rewrites the absolute directory prefixes (such as
// "/etc/flowgate/") into a temp dir, then writes, in that dir, every file the
// configuration names: certificates and keys (a test CA and a leaf for the
// server names and localhost), CA bundles, the Consul token file. Files
// outside the rewritten prefixes are left alone; `flowgate check` fails if
// they do not exist, as it should.
func materialize(t testing.TB, data []byte, prefixes ...string) *materialized {
	t.Helper()
	dir := t.TempDir()
	text := string(data)
	for _, p := range prefixes {
		if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
			t.Fatalf("prefix %q: want an absolute directory ending in /", p)
		}
		text = strings.ReplaceAll(text, p, filepath.Join(dir, strings.Trim(p, "/"))+"/")
	}
	cfg, err := agent.Parse([]byte(text))
	if err != nil {
		t.Fatalf("parsing configuration: %v\n%s", err, text)
	}
	hosts := append(append([]string{}, cfg.ServerNames...), "localhost", "127.0.0.1")
	for i, h := range hosts {
		hosts[i] = strings.TrimPrefix(h, "*.") // a wildcard's parent is good enough
	}
	ca := harness.NewTestCA(t)
	leaf, leafKey := ca.Leaf(t, 2, hosts...)
	leafChain := append(leaf, ca.CertPEM...) // leaf first
	write := func(path string, content []byte) {
		if path == "" || !strings.HasPrefix(path, dir+"/") {
			return
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cfg.TLS.Certificates {
		write(c.CertFile, leafChain)
		write(c.KeyFile, leafKey)
	}
	write(cfg.TLS.ClientCAFile, ca.CertPEM)
	write(cfg.Issuer.CACertFile, ca.CertPEM)
	write(cfg.Issuer.CAKeyFile, ca.KeyPEM)
	write(cfg.Upstreams.TLS.CAFile, ca.CertPEM)
	write(cfg.Upstreams.TLS.CertFile, leafChain)
	write(cfg.Upstreams.TLS.KeyFile, leafKey)
	write(cfg.Consul.TokenFile, []byte("00000000-0000-0000-0000-000000000000\n"))
	write(cfg.Consul.TLS.CAFile, ca.CertPEM)
	write(cfg.Consul.TLS.CertFile, leafChain)
	write(cfg.Consul.TLS.KeyFile, leafKey)
	path := filepath.Join(dir, "flowgate.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return &materialized{path: path, dir: dir, ca: ca}
}

// setYAML sets the scalar at a dotted key path in a YAML document (creating
// missing mappings) and returns the document, comments kept.
func setYAML(t testing.TB, data []byte, key string, value any) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	var val yaml.Node
	if err := val.Encode(value); err != nil {
		t.Fatal(err)
	}
	node := doc.Content[0]
	parts := strings.Split(key, ".")
	for i, p := range parts {
		if node.Kind != yaml.MappingNode {
			t.Fatalf("setting %s: %s is not a mapping", key, strings.Join(parts[:i], "."))
		}
		var next *yaml.Node
		for j := 0; j+1 < len(node.Content); j += 2 {
			if node.Content[j].Value == p {
				next = node.Content[j+1]
				if i == len(parts)-1 {
					node.Content[j+1] = &val
				}
				break
			}
		}
		if next == nil {
			next = &yaml.Node{Kind: yaml.MappingNode}
			if i == len(parts)-1 {
				next = &val
			}
			node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: p}, next)
		}
		node = next
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// configKeys lists every key path of agent.Config as the YAML spells it:
// "listen.https", "tls.certificates" and, for lists of mappings, their item
// keys as "tls.certificates[].cert_file".
func configKeys() []string {
	var keys []string
	walkConfig(agent.Default(), "", func(key string, _ any, _ bool) { keys = append(keys, key) })
	return keys
}

// keyPath joins a key path.
func keyPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return fmt.Sprintf("%s.%s", prefix, name)
}
