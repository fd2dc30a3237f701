package certs

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// IssuerMode selects what the built-in issuer creates.
type IssuerMode string

// Issuer modes.
const (
	// IssuerModeCA keeps a local CA (generated once, or provided by the user)
	// and issues short-lived leaves from it. Clients trust the CA once and
	// keep trusting every rotated leaf. The default.
	IssuerModeCA IssuerMode = "ca"
	// IssuerModeSelfSigned issues a bare self-signed leaf, like
	// `openssl req -x509 -nodes -newkey rsa:2048`, and rotates it the same
	// way. Every rotation produces a certificate that clients must trust
	// anew, so prefer IssuerModeCA unless clients pin the certificate itself.
	IssuerModeSelfSigned IssuerMode = "self_signed"
)

// ParseIssuerMode parses a mode name from the configuration. The empty string
// yields IssuerModeCA.
func ParseIssuerMode(s string) (IssuerMode, error) {
	switch m := IssuerMode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return IssuerModeCA, nil
	case IssuerModeCA, IssuerModeSelfSigned:
		return m, nil
	}
	return "", fmt.Errorf("unknown issuer mode %q: use %q or %q", s, IssuerModeCA, IssuerModeSelfSigned)
}

// CACertificatePath is the URL path at which flowgate serves the issuer's CA
// certificate (CACertificatePEM) on its HTTP and admin listeners, so that
// clients can fetch the trust root.
const CACertificatePath = "/.well-known/flowgate/ca.crt"

// Defaults and limits of IssuerOptions.
const (
	// DefaultCheckInterval is how often the issuer compares the wall clock
	// with the renewal point. It is also the maximum: Go timers stop while a
	// host is suspended, so a long timer alone could miss the renewal.
	DefaultCheckInterval = time.Minute
	// MinLeafLifetime is the shortest leaf lifetime accepted; short lifetimes
	// are for tests and demonstrations of rotation.
	MinLeafLifetime = 10 * time.Second
	// minBackoff and maxBackoff bound the retry delay after a failed rotation;
	// it doubles with each consecutive failure.
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
)

// IssuerOptions configures NewIssuer.
type IssuerOptions struct {
	// Mode selects a local CA with rotating leaves (IssuerModeCA) or a
	// rotating self-signed leaf (IssuerModeSelfSigned). Zero means
	// IssuerModeCA.
	Mode IssuerMode
	// StateDir holds the generated CA and the current leaf (see
	// CACertFileName, LeafCertFileName and friends). It is created with mode
	// 0700 if missing. Required; DefaultStateDir gives the usual one.
	StateDir string
	// CACertFile and CAKeyFile name a user-provided CA (PEM) to issue from
	// instead of a generated one, so that several flowgate instances share
	// one trust root. Both or neither; IssuerModeCA only. The files are read
	// at start and again on Reload; a failed re-read keeps the old CA.
	CACertFile, CAKeyFile string
	// KeyType is the key type of the generated CA and of every leaf. A CA
	// that already exists keeps its key type (changing it would break
	// trust); a saved leaf of another type is replaced. Zero means KeyP256.
	KeyType KeyAlgorithm
	// CALifetime is the validity of a generated CA. Zero means
	// DefaultCALifetime. A generated CA that would expire before a new leaf
	// is replaced, which clients must trust again.
	CALifetime time.Duration
	// LeafLifetime is the validity of each leaf, between MinLeafLifetime and
	// MaxLeafLifetime. Zero means DefaultLeafLifetime.
	LeafLifetime time.Duration
	// RenewBefore is how long before NotAfter a leaf is renewed; a random
	// jitter of up to a tenth of RenewBefore moves the renewal earlier still,
	// so the renewal point lies in [NotAfter − 1.1·RenewBefore,
	// NotAfter − RenewBefore]. At most 90% of LeafLifetime. Zero means a
	// third of LeafLifetime.
	RenewBefore time.Duration
	// Hosts are the DNS names and IP addresses each leaf covers. Nil means
	// DefaultHosts(). A saved leaf for other hosts is replaced.
	Hosts []string
	// CheckInterval is how often the wall clock is compared with the
	// renewal point, at most DefaultCheckInterval. Zero means
	// DefaultCheckInterval.
	CheckInterval time.Duration
	// Logger receives rotation notices and errors. Nil discards them.
	Logger *slog.Logger
	// Registerer receives the shared certificate metrics (name "issuer")
	// and the MetricIssuer… metrics. Nil registers nothing.
	Registerer prometheus.Registerer
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of serial numbers and renewal jitter (keys always
	// come from the operating system). Nil means crypto/rand.Reader.
	Rand io.Reader
}

func (o IssuerOptions) withDefaults() IssuerOptions {
	if m, err := ParseIssuerMode(string(o.Mode)); err == nil {
		o.Mode = m // validate reports a bad one
	}
	if k, err := ParseKeyAlgorithm(string(o.KeyType)); err == nil {
		o.KeyType = k
	}
	if o.CALifetime == 0 {
		o.CALifetime = DefaultCALifetime
	}
	if o.LeafLifetime == 0 {
		o.LeafLifetime = DefaultLeafLifetime
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = o.LeafLifetime / 3
	}
	if o.Hosts == nil {
		o.Hosts = DefaultHosts()
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return o
}

func (o IssuerOptions) validate() error {
	if _, err := ParseIssuerMode(string(o.Mode)); err != nil {
		return err
	}
	if o.StateDir == "" {
		return errors.New("issuer: no state directory configured")
	}
	if o.Mode == IssuerModeSelfSigned && (o.CACertFile != "" || o.CAKeyFile != "") {
		return errors.New("issuer: a CA certificate and key are only used in mode \"ca\"; remove them or change the mode")
	}
	if (o.CACertFile == "") != (o.CAKeyFile == "") {
		return errors.New("issuer: CA certificate and key files must be configured together")
	}
	if _, err := ParseKeyAlgorithm(string(o.KeyType)); err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if o.LeafLifetime < MinLeafLifetime || o.LeafLifetime > MaxLeafLifetime {
		return fmt.Errorf("issuer: leaf lifetime %s out of range [%s, %d days]", o.LeafLifetime, MinLeafLifetime, MaxLeafLifetime/(24*time.Hour))
	}
	if o.CALifetime <= o.LeafLifetime {
		return fmt.Errorf("issuer: CA lifetime %s must be longer than the leaf lifetime %s", o.CALifetime, o.LeafLifetime)
	}
	if o.RenewBefore <= 0 || o.RenewBefore > o.LeafLifetime/10*9 {
		return fmt.Errorf("issuer: renew-before %s must be positive and at most 90%% of the leaf lifetime %s", o.RenewBefore, o.LeafLifetime)
	}
	if o.CheckInterval <= 0 || o.CheckInterval > DefaultCheckInterval {
		return fmt.Errorf("issuer: check interval %s must be positive and at most %s", o.CheckInterval, DefaultCheckInterval)
	}
	return nil
}

// Issuer is the built-in certificate source: it issues a leaf for the
// configured hosts, persists it in the state directory, serves it, and
// rotates it before it expires. In IssuerModeCA the leaves are signed by a
// local CA that clients trust once; see IssuerModeSelfSigned for the
// alternative.
//
// After a restart a saved leaf is reused while it is signed by the current
// CA, covers exactly the configured hosts, has the configured key type and is
// not yet due; otherwise a new one is issued. A state file that cannot be
// parsed is moved aside as "<name>.corrupt-<timestamp>" and reported, never
// overwritten.
//
// A rotation that fails keeps the last good leaf in service and is retried
// with exponential backoff from 1 s up to 5 min. When only saving a new leaf
// fails (a read-only state directory), the new leaf is served from memory
// anyway and saving is retried the same way; until it succeeds a restart falls
// back to the saved leaf. Failures show in Status (LastError, NextRotation)
// and in the metrics.
type Issuer struct {
	opts    IssuerOptions
	hosts   hostSet
	holder  Holder
	metrics *issuerMetrics
	reload  chan struct{}
	running atomic.Bool

	// The fields below are written only by NewIssuer and then the Run
	// goroutine, always under mu; Run reads them without it.
	mu       sync.Mutex
	ca       *CA // nil in IssuerModeSelfSigned
	current  *tls.Certificate
	signer   *CA       // the CA that signed current (nil when self-signed)
	renewAt  time.Time // renewal point of current, jitter included
	loadedAt time.Time // when current was loaded or issued
	pending  *KeyPair  // current, issued but not yet saved
	failures int       // consecutive failed rotation attempts
	retryAt  time.Time // next attempt while failures > 0
	rotErr   error     // last rotation failure, nil after a success
	caErr    error     // last failed CA reload, nil after a success
}

var _ Provider = (*Issuer)(nil)

// NewIssuer validates opts, opens (or creates) the CA, and loads the saved
// leaf or issues a new one, so that the returned Issuer already serves a
// certificate. It fails when it cannot produce a certificate, or when it
// generated a CA that it could not save (clients would lose trust at the
// next start). Run must be called to rotate the certificate.
func NewIssuer(opts IssuerOptions) (*Issuer, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	hosts, err := parseHosts(opts.Hosts)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	metrics, err := newIssuerMetrics(opts.Registerer, opts.Mode == IssuerModeCA)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	iss := &Issuer{opts: opts, hosts: hosts, metrics: metrics, reload: make(chan struct{}, 1)}
	if err := ensureStateDir(opts.StateDir); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	now := opts.Now()
	if opts.Mode == IssuerModeCA {
		if iss.ca, err = OpenCA(iss.caOptions()); err != nil {
			return nil, fmt.Errorf("issuer: %w", err)
		}
	}
	reason := iss.loadLeaf(now)
	if reason == "" {
		return iss, nil
	}
	if err := iss.rotate(now, reason); err != nil {
		if iss.current == nil {
			return nil, fmt.Errorf("issuer: %w", err)
		}
		opts.Logger.Error("certificate rotation failed at start; serving the certificate below and retrying",
			"cert", issuerName, "err", err, "serving_serial", SerialHex(iss.current.Leaf),
			"not_after", iss.current.Leaf.NotAfter, "retry_at", iss.retryAt)
	}
	return iss, nil
}

func (iss *Issuer) caOptions() CAOptions {
	return CAOptions{
		StateDir:      iss.opts.StateDir,
		CertFile:      iss.opts.CACertFile,
		KeyFile:       iss.opts.CAKeyFile,
		KeyType:       iss.opts.KeyType,
		Lifetime:      iss.opts.CALifetime,
		ReplaceWithin: iss.opts.LeafLifetime,
		Logger:        iss.opts.Logger,
		Now:           iss.opts.Now,
		Rand:          iss.opts.Rand,
	}
}

func (iss *Issuer) leafPaths() (certPath, keyPath string) {
	return filepath.Join(iss.opts.StateDir, LeafCertFileName), filepath.Join(iss.opts.StateDir, LeafKeyFileName)
}

// GetCertificate returns the current leaf; it has the signature of
// tls.Config.GetCertificate.
func (iss *Issuer) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return iss.holder.GetCertificate(hello)
}

// Reload asks Run for an immediate check: a user-provided CA is read again, a
// pending retry happens now, and a due leaf is rotated. It does not block.
func (iss *Issuer) Reload() {
	select {
	case iss.reload <- struct{}{}:
	default:
	}
}

// CACertificatePEM returns the PEM certificate of the CA that signs the
// leaves, for clients to trust; nil in IssuerModeSelfSigned. It never
// contains a private key.
func (iss *Issuer) CACertificatePEM() []byte {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if iss.ca == nil {
		return nil
	}
	return iss.ca.CertificatePEM()
}

// Status describes the served leaf, the last failure (if any) and the time of
// the next rotation or retry.
func (iss *Issuer) Status() []Info {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	info := Describe(issuerName, "issuer:"+string(iss.opts.Mode), iss.current)
	info.LastReload = iss.loadedAt
	var msgs []string
	for _, err := range []error{iss.rotErr, iss.caErr} {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	info.LastError = strings.Join(msgs, "; ")
	info.NextRotation = iss.nextAttempt()
	return []Info{info}
}

// nextAttempt is when Run next tries to rotate or save.
func (iss *Issuer) nextAttempt() time.Time {
	if iss.failures > 0 {
		return iss.retryAt
	}
	return iss.renewAt
}
