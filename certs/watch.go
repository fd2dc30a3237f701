package certs

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxDebounceFactor bounds how long a steady stream of events can postpone a
// check: at most this many Debounce periods after the first event.
const maxDebounceFactor = 10

// Run watches the files until ctx is cancelled, then returns nil. It checks
// the files once the watches are in place, after a burst of file-system
// events has settled, every RecheckInterval, and on Reload. If file-system events are unavailable it
// logs why and relies on the periodic re-check. Run must not be called more
// than once at a time.
func (f *Files) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("certificate files are already being watched: Run called twice")
	}
	defer f.running.Store(false)

	var (
		w      *dirWatcher
		events <-chan fsnotify.Event
		errs   <-chan error
	)
	if !f.opts.noWatch {
		var err error
		w, err = newDirWatcher(f.paths(), f.log)
		if err != nil {
			f.log.Warn("cannot watch certificate files; relying on the periodic re-check",
				"interval", f.opts.RecheckInterval, "err", err)
		} else {
			defer w.close()
			events, errs = w.fs.Events, w.fs.Errors
		}
	}

	ticker := time.NewTicker(f.opts.RecheckInterval)
	defer ticker.Stop()
	settle := time.NewTimer(f.opts.Debounce)
	settle.Stop()
	defer settle.Stop()
	var burstStart time.Time // zero when no burst is pending

	// arm (re)starts the settle timer for a burst, but never postpones the
	// check further than maxDebounceFactor periods after its first event.
	arm := func() {
		now := time.Now()
		if burstStart.IsZero() {
			burstStart = now
		} else if now.Sub(burstStart) >= maxDebounceFactor*f.opts.Debounce {
			return
		}
		settle.Reset(f.opts.Debounce)
	}
	check := func() {
		burstStart = time.Time{}
		settle.Stop()
		f.check()
		w.refresh()
	}

	// A change made between NewFiles and the watches being in place would
	// otherwise wait for the periodic re-check.
	check()

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if w.relevant(ev) {
				arm()
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow or a lost watch may hide a change: look now.
			f.log.Warn("certificate file watcher error; re-checking the files", "err", err)
			arm()
		case <-settle.C:
			check()
		case <-ticker.C:
			check()
		case <-f.reload:
			f.log.Info("certificate re-check requested")
			check()
		}
	}
}

// paths lists every watched file as configured.
func (f *Files) paths() []string {
	var out []string
	for _, p := range f.opts.Pairs {
		out = append(out, p.CertFile, p.KeyFile)
	}
	if f.opts.ClientCAFile != "" {
		out = append(out, f.opts.ClientCAFile)
	}
	return out
}

// dirWatcher watches the parent directories of the configured files, and the
// directories their symlinks resolve to, and tells which events concern them.
// Watching a directory rather than the file survives a rename over the file,
// a delete and recreate, and a Kubernetes "..data" symlink swap.
type dirWatcher struct {
	fs  *fsnotify.Watcher
	log *slog.Logger

	paths      []string                   // configured files, cleaned
	configured map[string]bool            // parent directories of paths
	names      map[string]map[string]bool // directory -> file names of interest
}

func newDirWatcher(paths []string, log *slog.Logger) (*dirWatcher, error) {
	fs, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &dirWatcher{fs: fs, log: log, configured: make(map[string]bool)}
	for _, p := range paths {
		p = filepath.Clean(p)
		w.paths = append(w.paths, p)
		dir := filepath.Dir(p)
		if w.configured[dir] {
			continue
		}
		if err := fs.Add(dir); err != nil {
			fs.Close()
			return nil, err
		}
		w.configured[dir] = true
	}
	w.refresh()
	return w, nil
}

// refresh recomputes the names of interest and follows symlinks to their
// current targets: a file that links into another directory is rewritten
// there, where its parent directory sees nothing. It also re-adds a parent
// directory whose watch was lost when the directory was removed. A nil
// receiver does nothing.
func (w *dirWatcher) refresh() {
	if w == nil {
		return
	}
	names := make(map[string]map[string]bool)
	add := func(p string) {
		dir, base := filepath.Split(p)
		dir = filepath.Clean(dir)
		if names[dir] == nil {
			names[dir] = make(map[string]bool)
		}
		names[dir][base] = true
	}
	for _, p := range w.paths {
		add(p)
		if target, err := filepath.EvalSymlinks(p); err == nil && target != p {
			add(target)
		}
	}
	watched := make(map[string]bool)
	for _, dir := range w.fs.WatchList() {
		watched[dir] = true
	}
	for dir := range names {
		if watched[dir] {
			continue
		}
		if err := w.fs.Add(dir); err != nil {
			w.log.Debug("cannot watch certificate directory; relying on the periodic re-check", "dir", dir, "err", err)
		}
	}
	for dir := range watched {
		if names[dir] == nil {
			_ = w.fs.Remove(dir) // a symlink target directory no longer used
		}
	}
	w.names = names
}

// relevant reports whether ev may have changed a watched file: an event on
// one of its names, on a directory entry whose name starts with ".." (the
// Kubernetes "..data" link and its timestamped directories), or on a watched
// directory itself.
func (w *dirWatcher) relevant(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	if w.names[name] != nil {
		return true // a watched directory itself was removed or renamed
	}
	dir, base := filepath.Split(name)
	dir = filepath.Clean(dir)
	if w.names[dir][base] {
		return true
	}
	return w.configured[dir] && strings.HasPrefix(base, "..")
}

func (w *dirWatcher) close() { w.fs.Close() }
