package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/flowgate/flowgate/agent"
)

// docs are the documents whose YAML examples must be valid configurations.
var docs = []struct {
	path      string
	minBlocks int // guards the extraction: fewer blocks found is a bug here
}{
	{"README.md", 2},
	{"deploy/nginx-migration.md", 7},
}

// fence is one fenced code block of a Markdown file.
type fence struct {
	lang string
	line int // of the opening fence
	body string
}

// fences extracts the fenced code blocks of a Markdown document, also those
// indented inside list items.
func fences(t testing.TB, data []byte) []fence {
	t.Helper()
	var out []fence
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		if !strings.HasPrefix(trimmed, "```") {
			continue
		}
		indent := len(lines[i]) - len(trimmed)
		f := fence{lang: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), line: i + 1}
		var body []string
		for i++; ; i++ {
			if i == len(lines) {
				t.Fatalf("code block opened on line %d is never closed", f.line)
			}
			if strings.TrimSpace(lines[i]) == "```" {
				break
			}
			l := lines[i]
			if len(l) >= indent && strings.TrimSpace(l[:indent]) == "" {
				l = l[indent:]
			}
			body = append(body, l)
		}
		f.body = strings.Join(body, "\n") + "\n"
		out = append(out, f)
	}
	return out
}

// section returns the text under a Markdown heading, up to the next heading
// of the same or a higher level.
func section(t testing.TB, doc, heading string) string {
	t.Helper()
	level := strings.Index(heading, " ")
	start := strings.Index(doc, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("no section %q", heading)
	}
	rest := doc[start+len(heading)+2:]
	for i := 0; i < len(rest); {
		j := strings.Index(rest[i:], "\n#")
		if j < 0 {
			break
		}
		k := i + j + 1
		n := len(rest[k:]) - len(strings.TrimLeft(rest[k:], "#"))
		if n <= level && strings.HasPrefix(rest[k+n:], " ") && !insideFence(rest[:k]) {
			return rest[:k]
		}
		i = k
	}
	return rest
}

// insideFence reports whether text ends inside an open code block.
func insideFence(text string) bool {
	return strings.Count(text, "\n```")%2 == 1
}

// TestDocsYAMLAreValidConfigs runs `flowgate check` on every ```yaml block of
// the README and deploy/*.md, with the files they name created in a temp dir.
func TestDocsYAMLAreValidConfigs(t *testing.T) {
	t.Parallel()
	for _, d := range docs {
		n := 0
		for _, f := range fences(t, repoFile(t, d.path)) {
			if f.lang != "yaml" {
				continue
			}
			n++
			t.Run(fmt.Sprintf("%s:%d", d.path, f.line), func(t *testing.T) {
				t.Parallel()
				m := materialize(t, []byte(f.body), "/etc/flowgate/", "/var/lib/flowgate/")
				checkConfig(t, m.path)
			})
		}
		if n < d.minBlocks {
			t.Errorf("%s: found %d yaml blocks; want at least %d", d.path, n, d.minBlocks)
		}
	}
}

// TestReadmeQuickStart: exactly two commands set up a fresh machine, one
// runs flowgate on its defaults, one runs the whole test suite.
func TestReadmeQuickStart(t *testing.T) {
	t.Parallel()
	qs := section(t, string(repoFile(t, "README.md")), "## Quick start")
	fs := fences(t, []byte(qs))
	if len(fs) == 0 {
		t.Fatal("README Quick start has no code block")
	}
	var cmds []string
	for l := range strings.SplitSeq(fs[0].body, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	want := []string{"go run ./cmd/flowgate run", "bash test/run.sh"}
	if diff := cmp.Diff(want, cmds); diff != "" {
		t.Errorf("README Quick start commands (-want +got):\n%s", diff)
	}
	for _, p := range []string{"cmd/flowgate", "test/run.sh"} {
		if _, err := os.Stat(filepath.Join(repoRoot(t), p)); err != nil {
			t.Errorf("Quick start names %s: %v", p, err)
		}
	}
}

// referenceRow matches a row of the configuration reference table.
var referenceRow = regexp.MustCompile("(?m)^\\| `([a-z_.\\[\\]]+)` \\| `?([^|]*?)`? \\| .+ \\|$")

// TestReadmeConfigReference compares the README's table of configuration
// keys with agent.Config: every key listed once, no key that does not exist,
// and every default equal to agent.Default().
func TestReadmeConfigReference(t *testing.T) {
	t.Parallel()
	table := section(t, string(repoFile(t, "README.md")), "### Configuration file reference")
	rows := map[string]string{}
	for _, m := range referenceRow.FindAllStringSubmatch(table, -1) {
		if _, dup := rows[m[1]]; dup {
			t.Errorf("README: key %s listed twice", m[1])
		}
		rows[m[1]] = m[2]
	}
	walkConfig(agent.Default(), "", func(key string, def any, hasDefault bool) {
		cell, ok := rows[key]
		if !ok {
			t.Errorf("README configuration reference: key %s missing", key)
			return
		}
		delete(rows, key)
		if !hasDefault {
			if cell != "—" {
				t.Errorf("README %s default: got %q; want — (a list item's field)", key, cell)
			}
			return
		}
		got := reflect.New(reflect.TypeOf(def))
		if err := yaml.Unmarshal([]byte(cell), got.Interface()); err != nil {
			t.Errorf("README %s default %q: not a YAML %T: %v", key, cell, def, err)
			return
		}
		if diff := cmp.Diff(def, got.Elem().Interface(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("README %s default %q differs from agent.Default() (-code +README):\n%s", key, cell, diff)
		}
	})
	for key := range rows {
		t.Errorf("README configuration reference lists %s; agent.Config has no such key", key)
	}
}

// helpFlags runs `flowgate CMD --help` and returns the flag names listed.
func helpFlags(t testing.TB, cmd string) []string {
	t.Helper()
	r := runCmd(t, nil, flowgateBin(t), cmd, "--help")
	if r.err != nil {
		t.Fatalf("flowgate %s --help: %v\n%s", cmd, r.err, r.stderr)
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`).FindAllStringSubmatch(r.stderr, -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatalf("flowgate %s --help lists no flags:\n%s", cmd, r.stderr)
	}
	return names
}

// envName is the environment variable of a flag, as cmd/flowgate spells it.
func envName(flag string) string {
	return "FLOWGATE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// TestReadmeFlags: every flag of run and check is in the README's table with
// its environment variable, and every flag the section names exists.
func TestReadmeFlags(t *testing.T) {
	t.Parallel()
	sec := section(t, string(repoFile(t, "README.md")), "### Flags and environment variables")
	run := helpFlags(t, "run")
	for _, f := range run {
		row := regexp.MustCompile("(?m)^\\| `--" + regexp.QuoteMeta(f) + "[ `].*\\| `" + envName(f) + "` \\|")
		if !row.MatchString(sec) {
			t.Errorf("README flags table: no row for --%s with %s", f, envName(f))
		}
	}
	known := slices.Concat(run, helpFlags(t, "check"), helpFlags(t, "health"))
	for _, m := range regexp.MustCompile("`--([a-z][a-z-]*)").FindAllStringSubmatch(sec, -1) {
		if !slices.Contains(known, m[1]) {
			t.Errorf("README flags section names --%s; no flowgate command has it", m[1])
		}
	}
}

// TestDocsEnvVars: every FLOWGATE_* variable named in the README, deploy/
// and the Dockerfile is one flowgate reads.
func TestDocsEnvVars(t *testing.T) {
	t.Parallel()
	known := []string{"FLOWGATE_CONFIG"}
	for _, f := range helpFlags(t, "run") {
		known = append(known, envName(f))
	}
	root := repoRoot(t)
	files := []string{"README.md", "Dockerfile"}
	filepath.WalkDir(filepath.Join(root, "deploy"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			files = append(files, rel)
		}
		return err
	})
	env := regexp.MustCompile(`FLOWGATE_[A-Z_]+`)
	for _, f := range files {
		for _, v := range env.FindAllString(string(repoFile(t, f)), -1) {
			if v != "FLOWGATE_" && !slices.Contains(known, strings.TrimSuffix(v, "_")) {
				t.Errorf("%s names %s; flowgate reads no such variable", f, v)
			}
		}
	}
}

// TestReadmeMetrics compares the README's metric list with the metric names
// in flowgate's code, both ways.
func TestReadmeMetrics(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	name := regexp.MustCompile(`"(flowgate_[a-z_]+)"`)
	code := map[string]bool{}
	for _, dir := range []string{"agent", "certs", "discovery", "cmd"} {
		filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			for _, m := range name.FindAllStringSubmatch(string(b), -1) {
				code[m[1]] = true
			}
			return err
		})
	}
	if len(code) == 0 {
		t.Fatal("found no metric names in the code")
	}
	readme := string(repoFile(t, "README.md"))
	listed := section(t, readme, "### Metrics")
	for m := range code {
		if !strings.Contains(listed, "`"+m+"{") && !strings.Contains(listed, "`"+m+"`") {
			t.Errorf("README Metrics: %s missing", m)
		}
	}
	for _, m := range regexp.MustCompile(`flowgate_[a-z_]+`).FindAllString(readme, -1) {
		if !code[m] {
			t.Errorf("README names metric %s; the code has no such metric", m)
		}
	}
}

// TestReadmeSections: the sections the README promises, and the
// placeholders that other engineers fill.
func TestReadmeSections(t *testing.T) {
	t.Parallel()
	readme := string(repoFile(t, "README.md"))
	for _, h := range []string{
		"## Quick start", "## Configuration", "### Configuration file reference",
		"### Flags and environment variables", "## Operations", "### Reload",
		"### Admin endpoints", "### Metrics", "### Trusting the built-in CA",
		"## Deployment", "### Virtual machine with systemd", "### Nomad",
		"### Consul", "### Docker", "## Troubleshooting", "## Performance",
		"## Reliability",
	} {
		if strings.TrimSpace(section(t, readme, h)) == "" {
			t.Errorf("README section %q is empty", h)
		}
	}
	ca := section(t, readme, "### Trusting the built-in CA")
	for _, s := range []string{"update-ca-certificates", "update-ca-trust", "add-trusted-cert", "Cert:\\LocalMachine\\Root", "Firefox", "keytool", agent.CAPath} {
		if !strings.Contains(ca, s) {
			t.Errorf("README Trusting the built-in CA: %q missing", s)
		}
	}
}

// TestDocsLinks: relative links in the documents point at files that exist.
func TestDocsLinks(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	link := regexp.MustCompile(`\]\(([^)#:\s]+)(#[^)]*)?\)`)
	for _, doc := range []string{"README.md", "deploy/nginx-migration.md", "deploy/consul/README.md"} {
		for _, m := range link.FindAllStringSubmatch(string(repoFile(t, doc)), -1) {
			target := filepath.Join(root, filepath.Dir(doc), m[1])
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s links to %s: %v", doc, m[1], err)
			}
		}
	}
}
