package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pair names a PEM certificate chain file (leaf first) and its PEM private
// key file. Both may name the same file.
type Pair struct {
	CertFile string
	KeyFile  string
}

// FilesOptions configures NewFiles.
type FilesOptions struct {
	// Pairs are the certificates to serve. The first is the default for
	// clients that send no server name or one no certificate matches; the
	// others are selected by SNI (exact DNS/IP SAN, then wildcard). At least
	// one is required.
	Pairs []Pair
	// ClientCAFile is an optional PEM bundle of the CAs that sign client
	// certificates (mutual TLS). It is watched and reloaded like the pairs.
	// Empty means no client CA: ClientCAs returns nil.
	ClientCAFile string
	// RecheckInterval is how often the files are re-read even without a
	// file-system event, the safety net for lost events (bind mounts, NFS).
	// Zero means 30s.
	RecheckInterval time.Duration
	// ExpiryWarning: a certificate loaded with less than this left before
	// its NotAfter is served with a warning log. Zero means 7 days.
	ExpiryWarning time.Duration
	// Debounce is how long a burst of file-system events may last before
	// the files are checked once. Zero means 100ms.
	Debounce time.Duration
	// Logger receives load, reload and failure logs. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer receives the certificate metrics (see Metrics). Nil means
	// no metrics are registered.
	Registerer prometheus.Registerer
	// Now returns the current time, for expiry checks and timestamps. Nil
	// means time.Now.
	Now func() time.Time

	// noWatch disables fsnotify so tests can exercise the periodic re-check
	// alone.
	noWatch bool
}

func (o FilesOptions) withDefaults() FilesOptions {
	if o.RecheckInterval <= 0 {
		o.RecheckInterval = 30 * time.Second
	}
	if o.ExpiryWarning <= 0 {
		o.ExpiryWarning = 7 * 24 * time.Hour
	}
	if o.Debounce <= 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Files is a Provider serving certificates from PEM files that it watches and
// reloads when they change: on a file-system event in their directories, on a
// periodic re-check and on Reload. A change is accepted only if the new files
// pass LoadPair; otherwise the certificate being served stays, and the
// failure is logged and counted once. Files whose contents did not change
// cause no reload, log or metric. Build it with NewFiles.
//
// Metrics (see Metrics) are labelled with the certificate file path of each
// pair, or the ClientCAFile path; the initial load counts as a successful
// reload. For the CA bundle, the NotAfter gauge shows its soonest-expiring
// certificate.
type Files struct {
	opts    FilesOptions
	log     *slog.Logger
	metrics *Metrics

	certs     Holder
	clientCAs atomic.Pointer[x509.CertPool]

	reload  chan struct{} // buffered 1: Reload requests, coalesced
	running atomic.Bool
	checks  atomic.Int64 // completed checks, observed by tests

	mu    sync.Mutex // guards pairs and ca: written by check, read by Status
	pairs []*pairState
	ca    *caState // nil without ClientCAFile
}

var (
	_ Provider       = (*Files)(nil)
	_ ClientCASource = (*Files)(nil)
)

// digest identifies the contents of a pair's files or of a CA bundle.
type digest [sha256.Size]byte

func digestOf(parts ...[]byte) digest {
	h := sha256.New()
	for _, p := range parts {
		_ = binary.Write(h, binary.BigEndian, uint64(len(p)))
		h.Write(p)
	}
	var d digest
	h.Sum(d[:0])
	return d
}

// pairState is what Files knows about one pair.
type pairState struct {
	Pair
	cert       *tls.Certificate // served
	served     digest           // contents that produced cert
	seen       digest           // contents last examined; zero after a read error
	lastReload time.Time
	lastErr    string
}

// caState is what Files knows about the client CA bundle.
type caState struct {
	file    string
	served  digest
	seen    digest
	lastErr string
}

// NewFiles loads every pair and the client CA bundle and returns a Files
// serving them. It fails if any file is missing or invalid, naming the file,
// the reason and what to do. Call Run to watch the files.
func NewFiles(opts FilesOptions) (*Files, error) {
	opts = opts.withDefaults()
	if len(opts.Pairs) == 0 {
		return nil, errors.New("no certificate configured: give at least one certificate file and key file")
	}
	metrics, err := NewMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	f := &Files{
		opts:    opts,
		log:     opts.Logger,
		metrics: metrics,
		reload:  make(chan struct{}, 1),
	}
	now := opts.Now()
	var served []*tls.Certificate
	for i, p := range opts.Pairs {
		if p.CertFile == "" || p.KeyFile == "" {
			return nil, fmt.Errorf("certificate %d: both a certificate file and a key file are required", i)
		}
		certPEM, keyPEM, err := readPair(p.CertFile, p.KeyFile)
		if err != nil {
			return nil, err
		}
		cert, err := parsePair(p.CertFile, p.KeyFile, certPEM, keyPEM, now)
		if err != nil {
			return nil, err
		}
		d := digestOf(certPEM, keyPEM)
		f.pairs = append(f.pairs, &pairState{Pair: p, cert: cert, served: d, seen: d, lastReload: now})
		served = append(served, cert)
		f.accepted(p.CertFile, "", cert.Leaf, now, "certificate loaded")
	}
	set, err := NewSet(served...)
	if err != nil {
		return nil, err
	}
	f.certs.Store(set)

	if opts.ClientCAFile != "" {
		data, err := os.ReadFile(opts.ClientCAFile)
		if err != nil {
			return nil, readError("CA bundle", opts.ClientCAFile, err)
		}
		f.ca = &caState{file: opts.ClientCAFile}
		if err := f.acceptCA(data, now); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// GetCertificate selects the certificate for a handshake by SNI.
func (f *Files) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.certs.GetCertificate(hello)
}

// ClientCAs returns the current client CA pool, or nil when no ClientCAFile
// is configured. A tls.Config is static, so serve it through
// tls.Config.GetConfigForClient to pick up reloads.
func (f *Files) ClientCAs() *x509.CertPool { return f.clientCAs.Load() }

// Reload asks Run for an immediate re-check of every file. It does not block;
// requests made while one is pending are merged.
func (f *Files) Reload() {
	select {
	case f.reload <- struct{}{}:
	default:
	}
}

// Status describes the certificate served for each pair, in configuration
// order, with when it was last loaded and the last reload failure.
func (f *Files) Status() []Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Info, 0, len(f.pairs))
	for _, p := range f.pairs {
		info := Describe(p.CertFile, "file", p.cert)
		info.LastReload = p.lastReload
		info.LastError = p.lastErr
		out = append(out, info)
	}
	return out
}

// check re-reads every file and publishes what changed and is valid.
func (f *Files) check() {
	defer f.checks.Add(1)
	now := f.opts.Now()
	f.mu.Lock()
	defer f.mu.Unlock()

	changed := false
	for _, p := range f.pairs {
		if f.checkPair(p, now) {
			changed = true
		}
	}
	if changed {
		served := make([]*tls.Certificate, len(f.pairs))
		for i, p := range f.pairs {
			served[i] = p.cert
		}
		set, err := NewSet(served...)
		if err != nil { // cannot happen: every cert passed parsePair
			f.log.Error("cannot publish reloaded certificates; keeping the previous set", "err", err)
		} else {
			f.certs.Store(set)
		}
	}
	if f.ca != nil {
		f.checkCA(now)
	}
}

// checkPair re-reads one pair and reports whether its served certificate
// changed. Unchanged contents cost a read and a hash, and log nothing.
func (f *Files) checkPair(p *pairState, now time.Time) bool {
	certPEM, keyPEM, err := readPair(p.CertFile, p.KeyFile)
	if err != nil {
		p.seen = digest{}
		f.failed(p.CertFile, &p.lastErr, p.cert.Leaf, err)
		return false
	}
	d := digestOf(certPEM, keyPEM)
	if d == p.seen {
		return false
	}
	p.seen = d
	if d == p.served {
		f.restored(p.CertFile, &p.lastErr, p.cert.Leaf)
		return false
	}
	cert, err := parsePair(p.CertFile, p.KeyFile, certPEM, keyPEM, now)
	if err != nil {
		f.failed(p.CertFile, &p.lastErr, p.cert.Leaf, err)
		return false
	}
	old := SerialHex(p.cert.Leaf)
	p.cert, p.served, p.lastReload, p.lastErr = cert, d, now, ""
	f.accepted(p.CertFile, old, cert.Leaf, now, "certificate reloaded")
	return true
}

// checkCA re-reads the client CA bundle.
func (f *Files) checkCA(now time.Time) {
	c := f.ca
	data, err := os.ReadFile(c.file)
	if err != nil {
		c.seen = digest{}
		f.failed(c.file, &c.lastErr, nil, readError("CA bundle", c.file, err))
		return
	}
	d := digestOf(data)
	if d == c.seen {
		return
	}
	c.seen = d
	if d == c.served {
		f.restored(c.file, &c.lastErr, nil)
		return
	}
	if err := f.acceptCA(data, now); err != nil {
		f.failed(c.file, &c.lastErr, nil, err)
	}
}

// acceptCA parses a CA bundle and publishes it.
func (f *Files) acceptCA(data []byte, now time.Time) error {
	c := f.ca
	certs, err := parseBundle(c.file, data)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	soonest := certs[0]
	for _, ca := range certs {
		pool.AddCert(ca)
		if ca.NotAfter.Before(soonest.NotAfter) {
			soonest = ca
		}
	}
	initial := c.served == digest{}
	c.served, c.seen, c.lastErr = digestOf(data), digestOf(data), ""
	f.clientCAs.Store(pool)
	f.metrics.Served(c.file, soonest)
	f.metrics.ReloadSucceeded(c.file, now)
	msg := "client CA bundle reloaded"
	if initial {
		msg = "client CA bundle loaded"
	}
	f.log.Info(msg, "ca", c.file, "certificates", len(certs), "soonest_not_after", soonest.NotAfter)
	return nil
}

// accepted records a newly served certificate in metrics and logs.
func (f *Files) accepted(name, oldSerial string, leaf *x509.Certificate, now time.Time, msg string) {
	f.metrics.Served(name, leaf)
	f.metrics.ReloadSucceeded(name, now)
	attrs := []any{"cert", name, "serial", SerialHex(leaf), "subject", leaf.Subject.String(), "not_after", leaf.NotAfter}
	if oldSerial != "" {
		attrs = append(attrs, "old_serial", oldSerial)
	}
	f.log.Info(msg, attrs...)
	if left := leaf.NotAfter.Sub(now); left < f.opts.ExpiryWarning {
		f.log.Warn("certificate expires soon; renew it", "cert", name, "serial", SerialHex(leaf),
			"not_after", leaf.NotAfter, "remaining", left.Round(time.Second))
	}
}

// failed logs and counts a reload failure once per distinct error: a file
// that stays broken is not reported again on every event or re-check.
func (f *Files) failed(name string, lastErr *string, served *x509.Certificate, err error) {
	msg := err.Error()
	if msg == *lastErr {
		return
	}
	*lastErr = msg
	f.metrics.ReloadFailed(name)
	attrs := []any{"cert", name, "err", err}
	if served != nil {
		attrs = append(attrs, "serial", SerialHex(served))
	}
	f.log.Warn("certificate reload failed; still serving the previous one", attrs...)
}

// restored clears a failure when the files are back to what is served.
func (f *Files) restored(name string, lastErr *string, served *x509.Certificate) {
	if *lastErr == "" {
		return
	}
	*lastErr = ""
	attrs := []any{"cert", name}
	if served != nil {
		attrs = append(attrs, "serial", SerialHex(served))
	}
	f.log.Info("certificate files are valid again and unchanged", attrs...)
}
