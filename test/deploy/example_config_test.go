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

// TestExampleConfigPassesCheck runs `flowgate check` on deploy/flowgate.yaml
// with the certificate files it names created under a temp dir.
func TestExampleConfigPassesCheck(t *testing.T) {
	t.Parallel()
	m := materialize(t, repoFile(t, exampleConfig), "/etc/flowgate/")
	checkConfig(t, m.path)
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
