package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File names inside the issuer's state directory. Certificates are PEM and
// mode 0644, keys PKCS #8 PEM and mode 0600; the directory itself is 0700.
const (
	// CACertFileName holds the generated CA certificate: the file clients
	// trust once (also served at CACertificatePath).
	CACertFileName = "ca.crt"
	// CAKeyFileName holds the generated CA's private key.
	CAKeyFileName = "ca.key"
	// LeafCertFileName holds the served leaf certificate, followed by the
	// intermediate CA certificates of a user-provided intermediate CA.
	LeafCertFileName = "leaf.crt"
	// LeafKeyFileName holds the served leaf's private key.
	LeafKeyFileName = "leaf.key"
)

// File modes of the state the issuer writes.
const (
	stateDirMode = 0o700
	certFileMode = 0o644
	keyFileMode  = 0o600
)

// systemStateDir is the state directory of a system-wide installation.
const systemStateDir = "/var/lib/flowgate"

// DefaultStateDir returns the state directory flowgate uses when none is
// configured: /var/lib/flowgate when it is writable (or can be created),
// otherwise $XDG_STATE_HOME/flowgate, otherwise ~/.local/state/flowgate. The
// agent and `flowgate cert` both use it, so they find the same CA.
func DefaultStateDir() string {
	return stateDirFor(systemStateDir, os.Getenv, os.UserHomeDir)
}

// stateDirFor implements DefaultStateDir for a given system directory and
// environment.
func stateDirFor(system string, getenv func(string) string, home func() (string, error)) string {
	if dirWritable(system) {
		return system
	}
	if _, err := os.Stat(system); errors.Is(err, fs.ErrNotExist) && dirWritable(filepath.Dir(system)) {
		return system
	}
	if xdg := getenv("XDG_STATE_HOME"); filepath.IsAbs(xdg) {
		return filepath.Join(xdg, "flowgate")
	}
	if h, err := home(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "flowgate")
	}
	return system
}

// ensureStateDir creates dir (and its parents) with mode 0700 if it does not
// exist. An existing directory keeps its mode.
func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, stateDirMode); err != nil {
		return fmt.Errorf("creating state directory %q: %w", dir, err)
	}
	removeStaleStaging(dir)
	return nil
}

// removeStaleStaging deletes temporary files that a crash in the middle of
// an atomic write left behind (".<name>.tmp-*", see stageFile). They never
// hold the current state: a write only counts once it is renamed.
func removeStaleStaging(dir string) {
	for _, name := range []string{CACertFileName, CAKeyFileName, LeafCertFileName, LeafKeyFileName} {
		stale, _ := filepath.Glob(filepath.Join(dir, "."+name+".tmp-*"))
		for _, f := range stale {
			os.Remove(f)
		}
	}
}

// WriteFileAtomic replaces path with data so that readers see either the old
// or the new content, never a part: it writes a temporary file in the same
// directory, syncs it, renames it over path and syncs the directory.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := stageFile(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing %q: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writePairAtomic replaces a certificate and its key. Both are staged before
// either is renamed, so a failure to write leaves both old files in place;
// only a crash between the two renames can leave a mismatched pair, which
// the next load detects.
func writePairAtomic(certPath, keyPath string, certPEM, keyPEM []byte) error {
	keyTmp, err := stageFile(keyPath, keyPEM, keyFileMode)
	if err != nil {
		return err
	}
	certTmp, err := stageFile(certPath, certPEM, certFileMode)
	if err != nil {
		os.Remove(keyTmp)
		return err
	}
	if err := os.Rename(keyTmp, keyPath); err != nil {
		os.Remove(keyTmp)
		os.Remove(certTmp)
		return fmt.Errorf("replacing %q: %w", keyPath, err)
	}
	if err := os.Rename(certTmp, certPath); err != nil {
		os.Remove(certTmp)
		return fmt.Errorf("replacing %q: %w", certPath, err)
	}
	if err := syncDir(filepath.Dir(keyPath)); err != nil {
		return err
	}
	if filepath.Dir(certPath) != filepath.Dir(keyPath) {
		return syncDir(filepath.Dir(certPath))
	}
	return nil
}

// stageFile writes data to a new synced temporary file next to path and
// returns its name.
func stageFile(path string, data []byte, perm fs.FileMode) (string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing %q: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("writing %q: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing %q: %w", path, err)
	}
	return tmp, nil
}

// syncDir flushes a directory so that a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %q: %w", dir, err)
	}
	return nil
}

// errStateMissing reports that neither file of a pair exists.
var errStateMissing = errors.New("no state files")

// corruptStateError reports state files that exist but cannot be used: a
// file that does not parse, one half of a pair missing, or a key that does not
// match its certificate. The files are moved aside, never overwritten.
type corruptStateError struct {
	paths []string // the files that exist and are to be moved aside
	err   error
}

func (e *corruptStateError) Error() string {
	return fmt.Sprintf("corrupt state %q: %v", e.paths, e.err)
}

func (e *corruptStateError) Unwrap() error { return e.err }

// loadStatePair reads a certificate and key written by writePairAtomic. It
// returns errStateMissing when neither exists, a *corruptStateError when they
// exist but are unusable, and any other error (such as permission denied)
// as it is, so that readable-but-locked files are never moved aside.
func loadStatePair(certPath, keyPath string) (*tls.Certificate, error) {
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	certMissing := errors.Is(certErr, fs.ErrNotExist)
	keyMissing := errors.Is(keyErr, fs.ErrNotExist)
	switch {
	case certMissing && keyMissing:
		return nil, errStateMissing
	case certErr != nil && !certMissing:
		return nil, fmt.Errorf("reading %q: %w", certPath, certErr)
	case keyErr != nil && !keyMissing:
		return nil, fmt.Errorf("reading %q: %w", keyPath, keyErr)
	case certMissing:
		return nil, &corruptStateError{paths: []string{keyPath}, err: fmt.Errorf("%q is missing", certPath)}
	case keyMissing:
		return nil, &corruptStateError{paths: []string{certPath}, err: fmt.Errorf("%q is missing", keyPath)}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &corruptStateError{paths: []string{certPath, keyPath}, err: err}
	}
	return &pair, nil
}

// moveAside renames each path to "<path>.<reason>-<UTC timestamp>" so that
// its content is kept for inspection, and returns the new names.
func moveAside(paths []string, reason string, now time.Time) ([]string, error) {
	stamp := now.UTC().Format("20060102T150405Z")
	var moved []string
	for _, p := range paths {
		target := p + "." + reason + "-" + stamp
		for i := 1; ; i++ {
			if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
				break
			}
			target = fmt.Sprintf("%s.%s-%s.%d", p, reason, stamp, i)
		}
		if err := os.Rename(p, target); err != nil {
			return moved, fmt.Errorf("moving %q aside: %w", p, err)
		}
		moved = append(moved, target)
	}
	return moved, nil
}
