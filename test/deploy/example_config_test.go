package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const exampleConfig = "deploy/flowgate.yaml"

// TestExampleConfigHasEveryKey: deploy/flowgate.yaml shows every key of
// agent.Config, so a key added to the code without an example fails here.
func TestExampleConfigHasEveryKey(t *testing.T) {
	t.Parallel()
	have := yamlKeys(t, repoFile(t, exampleConfig))
	for _, key := range configKeys() {
		if !slices.Contains(have, key) {
			t.Errorf("%s: key %s missing; want every configuration key shown", exampleConfig, key)
		}
	}
}

// TestDeployYAMLPassCheck runs `flowgate check` on every YAML file in
// deploy/ (deploy/flowgate.yaml among them) with the files they name
// created under a temp dir.
func TestDeployYAMLPassCheck(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	var files []string
	err := filepath.WalkDir(filepath.Join(root, "deploy"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			rel, _ := filepath.Rel(root, path)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(files, exampleConfig) {
		t.Fatalf("YAML files in deploy/: got %q; want %s among them", files, exampleConfig)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			m := materialize(t, repoFile(t, f), "/etc/flowgate/", "/var/lib/flowgate/")
			checkConfig(t, m.path)
		})
	}
}

// TestExampleConfigNeedsItsFiles is the control of the test above: without
// the certificate files, check must fail and name them.
func TestExampleConfigNeedsItsFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := strings.ReplaceAll(string(repoFile(t, exampleConfig)), "/etc/flowgate/", dir+"/")
	path := filepath.Join(dir, "flowgate.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, nil, flowgateBin(t), "check", "--config", path)
	if r.err == nil {
		t.Fatalf("flowgate check without certificate files: got success; want failure")
	}
	if !strings.Contains(r.stderr, "tls.certificates[0].cert_file") {
		t.Errorf("flowgate check stderr: got %q; want it to name tls.certificates[0].cert_file", r.stderr)
	}
}
