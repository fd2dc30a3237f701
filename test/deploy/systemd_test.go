package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	unitFile     = "deploy/systemd/flowgate.service"
	sysusersFile = "deploy/systemd/flowgate.sysusers.conf"
	// unitConfig is the configuration path the unit runs with.
	unitConfig = "/etc/flowgate/flowgate.yaml"
)

// unitEntries parses a systemd unit into "Section.Key" -> values in order.
func unitEntries(t testing.TB, data []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s line %d: %q is not KEY=VALUE in a section", unitFile, i+1, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestSystemdUnitSettings checks what the unit must say: the commands, the
// dedicated user and the hardening.
func TestSystemdUnitSettings(t *testing.T) {
	t.Parallel()
	u := unitEntries(t, repoFile(t, unitFile))
	exact := map[string][]string{
		"Service.ExecStartPre":            {"/usr/local/bin/flowgate check --quiet --config " + unitConfig},
		"Service.ExecStart":               {"/usr/local/bin/flowgate run --config " + unitConfig},
		"Service.ExecReload":              {"/bin/kill -HUP $MAINPID"},
		"Service.User":                    {"flowgate"},
		"Service.Group":                   {"flowgate"},
		"Service.StateDirectory":          {"flowgate"},
		"Service.ConfigurationDirectory":  {"flowgate"},
		"Service.Environment":             {"FLOWGATE_STATE_DIR=/var/lib/flowgate"},
		"Service.AmbientCapabilities":     {"CAP_NET_BIND_SERVICE"},
		"Service.CapabilityBoundingSet":   {"CAP_NET_BIND_SERVICE"},
		"Service.NoNewPrivileges":         {"yes"},
		"Service.ProtectSystem":           {"strict"},
		"Service.ProtectHome":             {"yes"},
		"Service.PrivateTmp":              {"yes"},
		"Service.PrivateDevices":          {"yes"},
		"Service.ProtectKernelTunables":   {"yes"},
		"Service.ProtectKernelModules":    {"yes"},
		"Service.ProtectKernelLogs":       {"yes"},
		"Service.RestrictAddressFamilies": {"AF_INET AF_INET6 AF_UNIX"},
		"Service.Restart":                 {"on-failure"},
		"Service.LimitNOFILE":             {"65536"},
		"Install.WantedBy":                {"multi-user.target"},
	}
	for key, want := range exact {
		if diff := cmp.Diff(want, u[key]); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", unitFile, key, diff)
		}
	}
	if !slices.Contains(u["Service.SystemCallFilter"], "@system-service") {
		t.Errorf("%s SystemCallFilter: got %q; want @system-service", unitFile, u["Service.SystemCallFilter"])
	}
}

// TestSystemdUnitCommandsRun runs the unit's ExecStartPre exactly (with the
// binary and /etc/flowgate/ moved into a temp dir holding deploy/flowgate.yaml)
// and checks ExecStart's flags with `check`, which takes the same ones.
func TestSystemdUnitCommandsRun(t *testing.T) {
	t.Parallel()
	u := unitEntries(t, repoFile(t, unitFile))
	m := materialize(t, repoFile(t, exampleConfig), "/etc/flowgate/")
	confDir := filepath.Join(m.dir, "etc", "flowgate")
	if err := os.Rename(m.path, filepath.Join(confDir, "flowgate.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"Service.ExecStartPre", "Service.ExecStart"} {
		argv := strings.Fields(u[key][0])
		args := argv[1:]
		for i, a := range args {
			args[i] = strings.Replace(a, "/etc/flowgate/", confDir+"/", 1)
		}
		if key == "Service.ExecStart" {
			if args[0] != "run" {
				t.Fatalf("ExecStart: got subcommand %q; want run", args[0])
			}
			args[0] = "check"
		}
		r := runCmd(t, nil, flowgateBin(t), args...)
		if r.err != nil {
			t.Errorf("%s as flowgate %s: %v\n%s", key, strings.Join(args, " "), r.err, r.stderr)
		}
		if key == "Service.ExecStartPre" && r.stdout+r.stderr != "" {
			t.Errorf("ExecStartPre printed %q; want nothing (--quiet) on success", r.stdout+r.stderr)
		}
	}
}

// unitRoot builds a file system root for systemd-analyze --root: the host's
// system units, the unit under test as written, and every command its Exec
// lines name (flowgate itself is the binary .ci/build.sh built).
func unitRoot(t testing.TB, unit []byte) string {
	t.Helper()
	root := t.TempDir()
	units := "/usr/lib/systemd/system"
	if _, err := os.Stat(units); err != nil {
		units = "/lib/systemd/system"
	}
	copyTree(t, filepath.Join(root, units), units)
	dst := filepath.Join(root, "etc", "systemd", "system", "flowgate.service")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	for key, vals := range unitEntries(t, unit) {
		if !strings.HasPrefix(key, "Service.Exec") {
			continue
		}
		for _, v := range vals {
			exe := strings.TrimLeft(strings.Fields(v)[0], "-@+!:")
			src := exe
			if filepath.Base(exe) == "flowgate" {
				src = flowgateBin(t)
			}
			copyTree(t, filepath.Join(root, exe), src)
		}
	}
	return root
}

// TestSystemdUnitVerify runs `systemd-analyze verify` on the unit as
// written, with the commands it runs in place, and requires silence: verify
// exits 0 even for unknown keys, so any output is a failure.
func TestSystemdUnitVerify(t *testing.T) {
	t.Parallel()
	analyze := needTool(t, "systemd-analyze")
	unit := repoFile(t, unitFile)
	verify := func(unit []byte) result {
		root := unitRoot(t, unit)
		return runCmd(t, nil, analyze, "verify", "--man=no", "--root="+root, "/etc/systemd/system/flowgate.service")
	}
	r := verify(unit)
	if r.err != nil || r.stdout+r.stderr != "" {
		t.Errorf("systemd-analyze verify %s: err %v, output:\n%s%s\nwant success and no output", unitFile, r.err, r.stdout, r.stderr)
	}

	// Control: a misspelt key must be reported, or the check above proves
	// nothing.
	bad := strings.Replace(string(unit), "ProtectSystem=", "ProtectSystm=", 1)
	if r := verify([]byte(bad)); !strings.Contains(r.stdout+r.stderr, "ProtectSystm") {
		t.Errorf("systemd-analyze verify of a unit with a misspelt key: got %q; want it reported", r.stdout+r.stderr)
	}
}

// TestSystemdUnitSecurity requires systemd's own exposure rating of the
// unit to stay at 2.0 ("OK") or better.
func TestSystemdUnitSecurity(t *testing.T) {
	t.Parallel()
	analyze := needTool(t, "systemd-analyze")
	root := unitRoot(t, repoFile(t, unitFile))
	r := runCmd(t, nil, analyze, "security", "--offline=true", "--threshold=20", "--no-pager", "--root="+root, "flowgate.service")
	if r.err != nil {
		t.Errorf("systemd-analyze security: %v; want exposure 2.0 or less:\n%s%s", r.err, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "Overall exposure level for flowgate.service") {
		t.Errorf("systemd-analyze security printed no rating:\n%s%s", r.stdout, r.stderr)
	}
}

// TestSysusers creates the unit's user with systemd-sysusers in a temp root.
func TestSysusers(t *testing.T) {
	t.Parallel()
	sysusers := needTool(t, "systemd-sysusers")
	u := unitEntries(t, repoFile(t, unitFile))
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, nil, sysusers, "--root="+root, filepath.Join(repoRoot(t), sysusersFile))
	if r.err != nil {
		t.Fatalf("systemd-sysusers %s: %v\n%s", sysusersFile, r.err, r.stderr)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	var entry []string
	for line := range strings.SplitSeq(string(passwd), "\n") {
		if f := strings.Split(line, ":"); f[0] == u["Service.User"][0] {
			entry = f
		}
	}
	if len(entry) != 7 {
		t.Fatalf("/etc/passwd after systemd-sysusers: got %q; want user %s", passwd, u["Service.User"][0])
	}
	if entry[5] != "/var/lib/flowgate" || entry[6] != "/usr/sbin/nologin" {
		t.Errorf("user %s: home %q shell %q; want /var/lib/flowgate and /usr/sbin/nologin", entry[0], entry[5], entry[6])
	}
	group, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains("\n"+string(group), "\n"+u["Service.Group"][0]+":x:"+entry[3]+":") {
		t.Errorf("/etc/group: got %q; want group %s with GID %s", group, u["Service.Group"][0], entry[3])
	}
}
