package deploy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/flowgate/flowgate/agent"
)

const (
	flowgateJob = "deploy/nomad/flowgate.nomad.hcl"
	flowableJob = "deploy/nomad/flowable.nomad.hcl"
)

// hclFile is a parsed Nomad job with its variables' defaults.
type hclFile struct {
	name string
	body *hclsyntax.Body
	ctx  *hcl.EvalContext
}

// parseJob parses a job file with the HCL native syntax parser and builds an
// evaluation context whose var.* are the variables' defaults (unknown when
// a variable has none).
func parseJob(t testing.TB, rel string) *hclFile {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(filepath.Join(repoRoot(t), rel))
	if diags.HasErrors() {
		t.Fatalf("parsing %s: %s", rel, diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)
	vars := map[string]cty.Value{}
	for _, b := range body.Blocks {
		if b.Type != "variable" {
			continue
		}
		vars[b.Labels[0]] = cty.DynamicVal
		if a, ok := b.Body.Attributes["default"]; ok {
			v, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatalf("%s: variable %q default: %s", rel, b.Labels[0], diags.Error())
			}
			vars[b.Labels[0]] = v
		}
	}
	return &hclFile{name: rel, body: body, ctx: &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}}}
}

// blocks returns the blocks of a type (and first label, when given).
func blocks(body *hclsyntax.Body, typ string, label ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ && (len(label) == 0 || len(b.Labels) > 0 && b.Labels[0] == label[0]) {
			out = append(out, b)
		}
	}
	return out
}

// one returns the single block of a type (and label) or fails.
func (f *hclFile) one(t testing.TB, body *hclsyntax.Body, typ string, label ...string) *hclsyntax.Body {
	t.Helper()
	bs := blocks(body, typ, label...)
	if len(bs) != 1 {
		t.Fatalf("%s: got %d %s %v blocks; want 1", f.name, len(bs), typ, label)
	}
	return bs[0].Body
}

// attr evaluates an attribute to a string (numbers and bools as text); ""
// when it is missing.
func (f *hclFile) attr(t testing.TB, body *hclsyntax.Body, name string) string {
	t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		return ""
	}
	v, diags := a.Expr.Value(f.ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: %s: %s", f.name, name, diags.Error())
	}
	switch {
	case v.Type() == cty.String:
		return v.AsString()
	case v.Type() == cty.Number:
		return v.AsBigFloat().Text('f', -1)
	case v.Type() == cty.Bool:
		return strconv.FormatBool(v.True())
	}
	t.Fatalf("%s: %s is a %s; want a string, number or bool", f.name, name, v.Type().FriendlyName())
	return ""
}

// list evaluates a list-of-strings attribute.
func (f *hclFile) list(t testing.TB, body *hclsyntax.Body, name string) []string {
	t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		return nil
	}
	v, diags := a.Expr.Value(f.ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: %s: %s", f.name, name, diags.Error())
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	return out
}

// port returns the port of a listen address.
func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// TestNomadFlowgateJob checks the flowgate job: static ports 443 and 80
// mapped to the listeners of the configuration it renders, a readiness
// check on /readyz, certificate and key written 0600 with change_mode noop,
// the configuration reloaded by SIGHUP, and that configuration valid.
func TestNomadFlowgateJob(t *testing.T) {
	t.Parallel()
	f := parseJob(t, flowgateJob)
	job := f.one(t, f.body, "job", "flowgate")
	groups := blocks(job, "group")
	if len(groups) != 1 {
		t.Fatalf("%s: got %d groups; want 1", f.name, len(groups))
	}
	group := groups[0].Body
	task := f.one(t, group, "task", "flowgate")

	// The configuration the task runs with.
	args := f.list(t, f.one(t, task, "config"), "args")
	i := slices.Index(args, "--config")
	if len(args) < 3 || args[0] != "run" || i < 0 || i+1 >= len(args) {
		t.Fatalf("%s: task args %q; want run --config FILE", f.name, args)
	}
	var confData string
	var secrets []*hclsyntax.Body
	for _, b := range blocks(task, "template") {
		dest := f.attr(t, b.Body, "destination")
		switch {
		case "/"+dest == args[i+1]:
			confData = f.attr(t, b.Body, "data")
			if got := f.attr(t, b.Body, "change_mode") + " " + f.attr(t, b.Body, "change_signal"); got != "signal SIGHUP" {
				t.Errorf("%s: template %s: change_mode/signal %q; want signal SIGHUP (flowgate reloads on SIGHUP)", f.name, dest, got)
			}
		case strings.HasPrefix(dest, "secrets/"):
			secrets = append(secrets, b.Body)
		}
	}
	if confData == "" {
		t.Fatalf("%s: no template writes %s", f.name, args[i+1])
	}
	m := materialize(t, []byte(confData), "/secrets/")
	checkConfig(t, m.path)
	cfg, err := agent.Parse([]byte(confData))
	if err != nil {
		t.Fatal(err)
	}

	// Ports: static 443 and 80 on the host, mapped to the listeners.
	network := f.one(t, group, "network")
	for _, p := range []struct{ label, static, to string }{
		{"https", "443", port(cfg.Listen.HTTPS)},
		{"http", "80", port(cfg.Listen.HTTP)},
		{"admin", port(agent.Default().Listen.Admin), port(cfg.Listen.Admin)},
	} {
		b := f.one(t, network, "port", p.label)
		if got := f.attr(t, b, "static"); got != p.static {
			t.Errorf("%s: port %q static: got %q; want %s", f.name, p.label, got, p.static)
		}
		if got := f.attr(t, b, "to"); got != p.to {
			t.Errorf("%s: port %q to: got %q; want %s (the configured listener)", f.name, p.label, got, p.to)
		}
	}
	if cfg.Listen.PublicHTTPSPort != 443 {
		t.Errorf("%s: listen.public_https_port %d; want 443, the static port clients use", f.name, cfg.Listen.PublicHTTPSPort)
	}

	// The Consul service and its readiness check.
	var checked bool
	for _, s := range blocks(group, "service") {
		if f.attr(t, s.Body, "port") != "https" {
			continue
		}
		c := f.one(t, s.Body, "check")
		got := fmt.Sprintf("%s %s %s", f.attr(t, c, "type"), f.attr(t, c, "port"), f.attr(t, c, "path"))
		if got != "http admin /readyz" {
			t.Errorf("%s: https service check: got %q; want an http check on port admin, path /readyz", f.name, got)
		}
		checked = true
	}
	if !checked {
		t.Errorf("%s: no service on port https", f.name)
	}
	if cfg.Consul.Register.Enabled {
		t.Errorf("%s: consul.register.enabled with a Nomad service block registers flowgate twice", f.name)
	}

	// Certificate and key: the files the configuration names, 0600, owned by
	// the image's user, not a reason to restart.
	var dests []string
	var secretCalls []string
	secretCall := regexp.MustCompile(`\{\{\s*with secret [^}]*\}\}`)
	for _, b := range secrets {
		dest := f.attr(t, b, "destination")
		dests = append(dests, "/"+dest)
		if got := f.attr(t, b, "perms"); got != "600" {
			t.Errorf("%s: template %s perms: got %q; want \"600\"", f.name, dest, got)
		}
		if got := f.attr(t, b, "change_mode"); got != "noop" {
			t.Errorf("%s: template %s change_mode: got %q; want \"noop\" (flowgate watches the files)", f.name, dest, got)
		}
		if got := f.attr(t, b, "uid") + ":" + f.attr(t, b, "gid"); got != "65532:65532" {
			t.Errorf("%s: template %s uid:gid %s; want 65532:65532, the image's user", f.name, dest, got)
		}
		secretCalls = append(secretCalls, secretCall.FindString(f.attr(t, b, "data")))
	}
	for _, c := range cfg.TLS.Certificates {
		for _, file := range []string{c.CertFile, c.KeyFile} {
			if !slices.Contains(dests, file) {
				t.Errorf("%s: configuration names %s; no secrets/ template writes it (have %q)", f.name, file, dests)
			}
		}
	}
	if len(secretCalls) != 2 || secretCalls[0] == "" || secretCalls[0] != secretCalls[1] {
		t.Errorf("%s: secret calls of the cert and key templates: %q; want two identical calls (one certificate, two halves)", f.name, secretCalls)
	}

	// flowgate discovers what the Flowable job registers.
	fl := parseJob(t, flowableJob)
	svc := fl.one(t, fl.one(t, fl.one(t, fl.body, "job", "flowable"), "group", "flowable"), "service")
	if name := fl.attr(t, svc, "name"); !slices.Contains(cfg.Consul.Services, name) {
		t.Errorf("%s: consul.services %q; want the Flowable job's service %q", f.name, cfg.Consul.Services, name)
	}
}

// TestNomadFlowableJob checks the Flowable job registers its nodes the way
// flowgate discovers them.
func TestNomadFlowableJob(t *testing.T) {
	t.Parallel()
	f := parseJob(t, flowableJob)
	group := f.one(t, f.one(t, f.body, "job", "flowable"), "group", "flowable")
	svc := f.one(t, group, "service")
	if got := f.attr(t, svc, "name"); got != "flowable" {
		t.Errorf("%s: service name %q; want flowable", f.name, got)
	}
	if got := f.attr(t, f.one(t, svc, "meta"), "secure"); got != "false" {
		t.Errorf("%s: service meta secure %q; want \"false\" (plain HTTP nodes)", f.name, got)
	}
	check := f.one(t, svc, "check")
	if got := f.attr(t, check, "type") + " " + f.attr(t, check, "path"); got != "http /actuator/health" {
		t.Errorf("%s: check %q; want an http check on /actuator/health", f.name, got)
	}
	portLabel := f.attr(t, svc, "port")
	to := f.attr(t, f.one(t, f.one(t, group, "network"), "port", portLabel), "to")
	env := f.one(t, f.one(t, group, "task", "flowable"), "env")
	if got := f.attr(t, env, "SERVER_PORT"); got != to {
		t.Errorf("%s: SERVER_PORT %q; want the mapped port %q", f.name, got, to)
	}
	if got := f.attr(t, env, "SPRING_CLOUD_CONSUL_DISCOVERY_REGISTER"); got != "false" {
		t.Errorf("%s: SPRING_CLOUD_CONSUL_DISCOVERY_REGISTER %q; want \"false\": Nomad registers the node", f.name, got)
	}
}
