package deploy

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowgate/flowgate/agent"
)

// TestBuildScriptCommand pins the build command of .ci/build.sh: the one
// command CI and the Dockerfile build flowgate with.
func TestBuildScriptCommand(t *testing.T) {
	t.Parallel()
	var build []string
	for line := range strings.SplitSeq(string(repoFile(t, ".ci/build.sh")), "\n") {
		if strings.Contains(line, "go build") {
			if build != nil {
				t.Fatalf(".ci/build.sh: more than one go build line; want exactly one")
			}
			build = shellWords(t, line)
		}
	}
	want := []string{
		"CGO_ENABLED=0", "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version=${VERSION:-dev}",
		"-o", "${OUT:-bin/flowgate}", "./cmd/flowgate",
	}
	if diff := cmp.Diff(want, build); diff != "" {
		t.Errorf(".ci/build.sh go build command (-want +got):\n%s", diff)
	}
}

// TestBuildScriptBinary checks the binary .ci/build.sh produced: static,
// stripped, built with -trimpath and the version stamped in.
func TestBuildScriptBinary(t *testing.T) {
	t.Parallel()
	bin := flowgateBin(t)
	r := runCmd(t, nil, bin, "version")
	if r.err != nil || !strings.HasPrefix(r.stdout, "flowgate "+buildVersion+" ") {
		t.Errorf("flowgate version: got %q (err %v); want it to start with %q", r.stdout, r.err, "flowgate "+buildVersion+" ")
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("reading %s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("binary has an ELF interpreter; want a static binary (CGO_ENABLED=0)")
		}
	}
	for _, name := range []string{".symtab", ".debug_info", ".zdebug_info"} {
		if f.Section(name) != nil {
			t.Errorf("binary has section %s; want it stripped (-ldflags -s -w)", name)
		}
	}

	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("reading build info of %s: %v", bin, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	// -ldflags is not recorded with -trimpath; the version above and the
	// missing symbols show it was applied.
	for key, want := range map[string]string{
		"-trimpath":   "true",
		"CGO_ENABLED": "0",
	} {
		if got := settings[key]; got != want {
			t.Errorf("build setting %s: got %q; want %q", key, got, want)
		}
	}
	if bi.Path != "github.com/flowgate/flowgate/cmd/flowgate" {
		t.Errorf("main package: got %q; want github.com/flowgate/flowgate/cmd/flowgate", bi.Path)
	}
}

// TestDockerfile checks the image definition: a golang:1.26 builder that
// runs .ci/build.sh, a distroless non-root runtime, the ports of the
// default listeners, the state volume, the health check and entry point.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t, repoFile(t, "Dockerfile"))
	if len(stages) != 2 {
		t.Fatalf("Dockerfile stages: got %d; want 2 (build, runtime)", len(stages))
	}
	build, final := stages[0], stages[1]
	if build.image != "golang:1.26" || build.name != "build" {
		t.Errorf("build stage: got FROM %s AS %s; want FROM golang:1.26 AS build", build.image, build.name)
	}
	runsScript := false
	for _, run := range build.all("RUN") {
		if strings.Contains(run, "bash .ci/build.sh") && strings.Contains(run, "OUT=/out/flowgate") {
			runsScript = true
		}
		if strings.Contains(run, "go build") {
			t.Errorf("build stage RUN %q: builds by itself; want it to run .ci/build.sh only", run)
		}
	}
	if !runsScript {
		t.Errorf("build stage: no RUN of bash .ci/build.sh with OUT=/out/flowgate")
	}

	if final.image != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime image: got %s; want gcr.io/distroless/static-debian12:nonroot", final.image)
	}
	if !slices.Contains(final.all("COPY"), "--from=build /out/flowgate /flowgate") {
		t.Errorf("runtime COPY: got %q; want --from=build /out/flowgate /flowgate", final.all("COPY"))
	}
	users := final.all("USER")
	if len(users) != 1 || users[0] != "65532:65532" {
		t.Errorf("USER: got %q; want 65532:65532 (distroless nonroot)", users)
	}

	def := agent.Default()
	var wantPorts []string
	for _, addr := range []string{def.Listen.HTTPS, def.Listen.HTTP, def.Listen.Admin} {
		wantPorts = append(wantPorts, addr[strings.LastIndex(addr, ":")+1:])
	}
	if got := strings.Join(final.all("EXPOSE"), " "); got != strings.Join(wantPorts, " ") {
		t.Errorf("EXPOSE: got %q; want the default listener ports %q", got, strings.Join(wantPorts, " "))
	}
	if got := final.all("VOLUME"); len(got) != 1 || !slices.Equal(execForm(t, "VOLUME", got[0]), []string{"/var/lib/flowgate"}) {
		t.Errorf("VOLUME: got %q; want [\"/var/lib/flowgate\"]", got)
	}
	if got := final.all("ENV"); !slices.Contains(got, "FLOWGATE_STATE_DIR=/var/lib/flowgate") {
		t.Errorf("ENV: got %q; want FLOWGATE_STATE_DIR=/var/lib/flowgate", got)
	}
	if !slices.Contains(final.all("COPY"), "--from=build --chown=65532:65532 /out/state /var/lib/flowgate") {
		t.Errorf("runtime COPY: got %q; want the state dir owned by 65532", final.all("COPY"))
	}

	hc := final.all("HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatalf("HEALTHCHECK: got %d; want 1", len(hc))
	}
	_, cmdPart, ok := strings.Cut(hc[0], " CMD ")
	if !ok || !slices.Equal(execForm(t, "HEALTHCHECK CMD", cmdPart), []string{"/flowgate", "health"}) {
		t.Errorf("HEALTHCHECK: got %q; want CMD [\"/flowgate\", \"health\"]", hc[0])
	}
	// `flowgate health` asks 127.0.0.1:9100 unless FLOWGATE_ADMIN_ADDR says
	// otherwise: that must be where the admin listener is by default.
	if def.Listen.Admin != "127.0.0.1:9100" {
		t.Errorf("default admin listener %q: the HEALTHCHECK asks 127.0.0.1:9100", def.Listen.Admin)
	}
	for _, env := range final.all("ENV") {
		if strings.HasPrefix(env, "FLOWGATE_ADMIN_ADDR") {
			t.Errorf("ENV %s: moving the admin listener needs the HEALTHCHECK to follow", env)
		}
	}
	if got := final.all("ENTRYPOINT"); len(got) != 1 || !slices.Equal(execForm(t, "ENTRYPOINT", got[0]), []string{"/flowgate"}) {
		t.Errorf("ENTRYPOINT: got %q; want [\"/flowgate\"]", got)
	}
	if got := final.all("CMD"); len(got) != 1 || !slices.Equal(execForm(t, "CMD", got[0]), []string{"run"}) {
		t.Errorf("CMD: got %q; want [\"run\"]", got)
	}
}

// TestDockerBuildStage runs the build stage of the Dockerfile without
// Docker: it copies the build context as .dockerignore leaves it, follows the
// stage's COPY and RUN instructions (with /out moved into a temp dir), and
// checks that what the runtime stage copies exists and works.
func TestDockerBuildStage(t *testing.T) {
	t.Parallel()
	flowgateBin(t) // warm the build cache; the stage then mostly links
	root := repoRoot(t)
	tmp := t.TempDir()
	ctxDir, src, out := filepath.Join(tmp, "context"), filepath.Join(tmp, "src"), filepath.Join(tmp, "out")

	ignore := dockerignore(t, repoFile(t, ".dockerignore"))
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !ignore(e.Name()) {
			copyTree(t, filepath.Join(ctxDir, e.Name()), filepath.Join(root, e.Name()))
		}
	}

	stages := parseDockerfile(t, repoFile(t, "Dockerfile"))
	version := "9.9.9-dockertest"
	for _, in := range stages[0].insts {
		switch in.cmd {
		case "WORKDIR", "ARG":
		case "COPY":
			f := strings.Fields(in.args)
			if strings.HasPrefix(f[0], "--") {
				t.Fatalf("Dockerfile line %d: COPY %s: flags not emulated by this test", in.line, in.args)
			}
			for _, s := range f[:len(f)-1] {
				from := filepath.Join(ctxDir, s)
				if _, err := os.Stat(from); err != nil {
					t.Fatalf("Dockerfile line %d: COPY %s: not in the build context (.dockerignore?): %v", in.line, s, err)
				}
				copyTree(t, filepath.Join(src, s), from)
			}
		case "RUN":
			script := strings.ReplaceAll(in.args, "/out/", out+"/")
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "VERSION="+version)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("Dockerfile line %d: RUN %s: %v\n%s", in.line, in.args, err, b)
			}
		default:
			t.Fatalf("Dockerfile line %d: build stage instruction %s not emulated by this test", in.line, in.cmd)
		}
	}

	r := runCmd(t, nil, filepath.Join(out, "flowgate"), "version")
	if r.err != nil || !strings.HasPrefix(r.stdout, "flowgate "+version+" ") {
		t.Errorf("image's flowgate version: got %q (err %v); want it to start with %q", r.stdout, r.err, "flowgate "+version+" ")
	}
	fi, err := os.Stat(filepath.Join(out, "state"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir /out/state: got %v (err %v); want a directory with mode 0700", fi, err)
	}
}

// dockerignore returns a matcher for the top-level names .dockerignore
// excludes. It accepts only patterns whose Docker meaning it is sure of:
// plain names and * globs without slashes or negation.
func dockerignore(t testing.TB, data []byte) func(name string) bool {
	t.Helper()
	var pats []string
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsAny(line, "/!?[\\") || strings.Contains(line, "**") {
			t.Fatalf(".dockerignore pattern %q: this test only emulates plain top-level names and * globs", line)
		}
		if _, err := filepath.Match(line, "x"); err != nil {
			t.Fatalf(".dockerignore pattern %q: %v", line, err)
		}
		pats = append(pats, line)
	}
	for _, must := range []string{".git", "test"} {
		if !slices.Contains(pats, must) {
			t.Errorf(".dockerignore: %s not excluded; want the build context small", must)
		}
	}
	return func(name string) bool {
		for _, p := range pats {
			if ok, _ := filepath.Match(p, name); ok {
				return true
			}
		}
		return false
	}
}

// copyTree copies the file or directory src to dst, replacing files that
// exist, keeping permission bits, and recreating symbolic links as links
// (as Docker's COPY does).
func copyTree(t testing.TB, dst, src string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode().IsRegular():
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		case info.Mode().Type() == fs.ModeSymlink:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		}
		return fmt.Errorf("%s: %v is not a regular file, directory or symbolic link", path, info.Mode().Type())
	})
	if err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}

// shellWords splits a shell command line into words, honouring double
// quotes (no expansion): enough to read .ci/build.sh.
func shellWords(t testing.TB, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range strings.TrimSpace(line) {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quotes in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
