package fault

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/flowgate/flowgate/test/harness"
)

// rotatingIssuer is a configuration whose built-in issuer rotates every
// couple of seconds: a leaf lives 10 s (certs.MinLeafLifetime) and is
// renewed 8 s before it expires.
const rotatingIssuer = `
issuer:
  leaf_lifetime: 10s
  renew_before: 8s
`

// storageFault breaks the state directory's writes and repairs them.
type storageFault struct {
	name    string
	how     string // what the test did, for the figure
	inflict func(t *testing.T, stateDir string, pid int)
	repair  func(t *testing.T, stateDir string, pid int)
}

// TestIssuerStorageFailures breaks the issuer's writes while it rotates: a
// read-only state directory, a full disk, a file size limit. The issuer
// must keep serving a valid certificate from its CA, report the failure in
// /metrics (flowgate_issuer_rotations_total{result="failure"}) and /status
// (last_error), leave the saved files as they were, and recover once the
// writes work again.
func TestIssuerStorageFailures(t *testing.T) {
	t.Parallel()
	stub := harness.StartStub(t, "n1")
	for _, f := range storageFaults(t) {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stateDir := filepath.Join(dir, "state")
			if err := os.Mkdir(stateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if f.name == "full disk" {
				mountTmpfs(t, stateDir, "size=64k")
			}
			fg := harness.StartFlowgate(t, harness.Options{
				Args:      []string{"--state-dir", stateDir},
				Upstreams: []string{stub.Addr},
				Config:    rotatingIssuer,
			})
			caPEM, err := os.ReadFile(filepath.Join(stateDir, "ca.crt"))
			if err != nil {
				t.Fatalf("the issuer saved no CA: %v", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(caPEM) {
				t.Fatalf("ca.crt in the state directory is not a PEM certificate")
			}
			// One successful rotation first, so that the failure is a
			// change from a working state.
			if !harness.Poll(15*time.Second, func() bool { return fg.Metric(t, "flowgate_issuer_rotations_total", `result="success"`) >= 2 }) {
				t.Fatalf("no successful rotation within 15s with leaf_lifetime 10s")
			}
			files := snapshotDir(t, stateDir)
			pid := pidOf(t, stateDir)

			f.inflict(t, stateDir, pid)
			failures := fg.Metric(t, "flowgate_issuer_rotations_total", `result="failure"`)
			start := time.Now()
			if !harness.Poll(15*time.Second, func() bool {
				return fg.Metric(t, "flowgate_issuer_rotations_total", `result="failure"`) > failures
			}) {
				t.Fatalf("flowgate_issuer_rotations_total{result=\"failure\"} stayed at %v for 15s; want a failed rotation counted", failures)
			}
			detected := time.Since(start)
			// Over several failed attempts, every handshake gets a valid
			// certificate from the same CA.
			var serials []string
			for range 6 {
				serial, err := servedSerial(fg.HTTPS, roots)
				if err != nil {
					t.Fatalf("handshake while the state directory is broken: %v; want a certificate that verifies against ca.crt", err)
				}
				if len(serials) == 0 || serials[len(serials)-1] != serial {
					serials = append(serials, serial)
				}
				time.Sleep(500 * time.Millisecond)
			}
			st := fg.Status()
			if len(st.Certificates) != 1 || st.Certificates[0].LastError == "" {
				t.Errorf("/status certificates: got %+v; want the issuer with last_error set", st.Certificates)
			}
			lastErr := st.Certificates[0].LastError
			if diff := compareDirs(files, snapshotDir(t, stateDir)); diff != "" {
				t.Errorf("the state directory changed while broken: %s", diff)
			}
			harness.Figure(t, "issuer, %s (%s): failed rotation counted %v after the break; serials served meanwhile %v, all verified against the CA; last_error %q",
				f.name, f.how, detected.Round(time.Millisecond), serials, lastErr)

			f.repair(t, stateDir, pid)
			successes := fg.Metric(t, "flowgate_issuer_rotations_total", `result="success"`)
			// The issuer's next retry, by its backoff; SIGHUP should not
			// wait for it (certs.Issuer.Reload: "a pending retry happens
			// now").
			retryIn := time.Until(time.Unix(int64(fg.Metric(t, "flowgate_issuer_next_rotation_timestamp_seconds")), 0))
			if err := fg.Reload(); err != nil {
				t.Fatalf("reload: %v", err)
			}
			start = time.Now()
			if !harness.Poll(15*time.Second, func() bool {
				st := fg.Status()
				return fg.Metric(t, "flowgate_issuer_rotations_total", `result="success"`) > successes &&
					len(st.Certificates) == 1 && st.Certificates[0].LastError == ""
			}) {
				t.Fatalf("after the repair: no successful save within 15s; last_error %q", fg.Status().Certificates[0].LastError)
			}
			saved := time.Since(start)
			harness.Figure(t, "issuer, %s: saved again %v after the repair and SIGHUP (the backoff's next retry was %v away)",
				f.name, saved.Round(time.Millisecond), retryIn.Round(time.Second))
			if retryIn > 3*time.Second && saved > 1500*time.Millisecond {
				t.Errorf("after SIGHUP the save waited %v, for the backoff's retry %v away; want SIGHUP to retry at once (the agent does not call the provider's Reload)", saved.Round(time.Millisecond), retryIn.Round(time.Second))
			}
			if serial, err := servedSerial(fg.HTTPS, roots); err != nil {
				t.Errorf("handshake after the repair: %v", err)
			} else if got := fg.Status().Certificates[0].Serial; !equalSerial(got, serial) {
				t.Errorf("after the repair: /status serial %s, handshake serial %s; want the same", got, serial)
			}
		})
	}
}

// storageFaults lists the breakages this machine can produce. The full disk
// needs a tmpfs mount (root); without it only the other two run, and the
// test says so.
func storageFaults(t *testing.T) []storageFault {
	faults := []storageFault{
		{
			name: "read-only state directory",
			how:  readOnlyHow(),
			inflict: func(t *testing.T, stateDir string, _ int) {
				setReadOnly(t, stateDir, true)
			},
			repair: func(t *testing.T, stateDir string, _ int) {
				setReadOnly(t, stateDir, false)
			},
		},
		{
			name: "file size limit",
			how:  "RLIMIT_FSIZE 0 set on the running process: writes fail with EFBIG",
			inflict: func(t *testing.T, _ string, pid int) {
				setFileSizeLimit(t, pid, 0)
			},
			repair: func(t *testing.T, _ string, pid int) {
				setFileSizeLimit(t, pid, rlimInfinity)
			},
		},
	}
	if canMountTmpfs() {
		faults = append(faults, storageFault{
			name: "full disk",
			how:  "state directory on a 64 KiB tmpfs, filled up: writes fail with ENOSPC",
			inflict: func(t *testing.T, stateDir string, _ int) {
				fillDisk(t, stateDir)
			},
			repair: func(t *testing.T, stateDir string, _ int) {
				if err := os.Remove(filepath.Join(stateDir, "filler")); err != nil {
					t.Fatal(err)
				}
			},
		})
	} else {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs to fill up (needs root); CI must run as root")
		}
		t.Logf("SKIPPED: the full-disk case needs a tmpfs mount (root); the file size limit case stands in for it")
	}
	return faults
}

// readOnlyHow says how setReadOnly makes a directory read-only here.
func readOnlyHow() string {
	if os.Geteuid() != 0 {
		return "mode 0500"
	}
	return "immutable attribute (chattr +i), as root ignores modes"
}

// setReadOnly makes dir refuse new files and renames, or undoes it. A
// non-root user gets mode 0500; root, whom modes do not stop, gets the
// immutable attribute (chattr +i).
func setReadOnly(t *testing.T, dir string, on bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		mode := os.FileMode(0o700)
		if on {
			mode = 0o500
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := setImmutable(dir, on); err != nil {
		t.Fatalf("chattr %v %s: %v (root needs CAP_LINUX_IMMUTABLE and a file system with the attribute, such as ext4 or tmpfs)", on, dir, err)
	}
	if on {
		t.Cleanup(func() { setImmutable(dir, false) })
	}
}

// setImmutable sets or clears FS_IMMUTABLE_FL on path (chattr ±i).
func setImmutable(path string, on bool) error {
	const (
		fsIocGetFlags = 0x80086601
		fsIocSetFlags = 0x40086602
		immutable     = 0x10
	)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var flags int
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocGetFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return fmt.Errorf("FS_IOC_GETFLAGS: %w", e)
	}
	if on {
		flags |= immutable
	} else {
		flags &^= immutable
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocSetFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return fmt.Errorf("FS_IOC_SETFLAGS: %w", e)
	}
	return nil
}

// rlimInfinity is RLIM_INFINITY as the unsigned value struct rlimit holds.
const rlimInfinity = ^uint64(0)

// setFileSizeLimit sets RLIMIT_FSIZE of another process (prlimit(2)).
func setFileSizeLimit(t *testing.T, pid int, limit uint64) {
	t.Helper()
	lim := syscall.Rlimit{Cur: limit, Max: rlimInfinity}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE, uintptr(unsafe.Pointer(&lim)), 0, 0, 0); e != 0 {
		t.Fatalf("prlimit(%d, RLIMIT_FSIZE, %d): %v", pid, limit, e)
	}
}

// canMountTmpfs reports whether this process may mount a tmpfs.
func canMountTmpfs() bool {
	dir, err := os.MkdirTemp("", "flowgate-tmpfs-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(dir)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4k"); err != nil {
		return false
	}
	syscall.Unmount(dir, 0)
	return true
}

// mountTmpfs mounts a tmpfs with opts on dir until the test ends.
func mountTmpfs(t *testing.T, dir, opts string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
}

// fillDisk writes dir/filler until the file system is full.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for range 1 << 16 {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("filling %s: %v", dir, err)
		}
	}
	t.Fatalf("filling %s: still not full after 256 MiB; is it the tmpfs?", dir)
}

// snapshotDir reads every regular file in dir.
func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte)
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "filler" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

// compareDirs describes how two snapshots differ, or returns "".
func compareDirs(before, after map[string][]byte) string {
	for name, data := range before {
		got, ok := after[name]
		switch {
		case !ok:
			return name + " disappeared"
		case !bytes.Equal(got, data):
			return name + " changed"
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			return name + " appeared"
		}
	}
	return ""
}

// equalSerial compares hex serials ignoring case and leading zeros.
func equalSerial(a, b string) bool {
	trim := func(s string) string {
		s = string(bytes.ToLower([]byte(s)))
		for len(s) > 1 && s[0] == '0' {
			s = s[1:]
		}
		return s
	}
	return trim(a) == trim(b)
}
