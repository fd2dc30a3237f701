package certs

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Lifetimes of issued certificates.
const (
	// DefaultCALifetime is how long a generated CA is valid: 10 years.
	DefaultCALifetime = 10 * 365 * 24 * time.Hour
	// DefaultLeafLifetime is how long an issued leaf is valid: 30 days.
	DefaultLeafLifetime = 30 * 24 * time.Hour
	// MaxLeafLifetime is the longest leaf lifetime accepted: 825 days.
	// Apple platforms reject TLS server certificates valid for longer, even
	// when they chain to a CA the user installed.
	MaxLeafLifetime = 825 * 24 * time.Hour
	// backdate is how far NotBefore lies in the past, so that clients whose
	// clocks run behind accept a certificate issued a moment ago.
	backdate = time.Hour
)

// CAOptions configures OpenCA. Either CertFile and KeyFile name a CA the user
// provides, or StateDir holds a CA that flowgate generates on first use.
type CAOptions struct {
	// StateDir is where a generated CA is kept (ca.crt and ca.key). It is
	// created with mode 0700 if missing. Required unless CertFile is set.
	StateDir string
	// CertFile and KeyFile name a user-provided CA certificate (PEM, optionally
	// followed by the certificates above it) and its private key. Both or
	// neither must be set. A user-provided CA is never written to.
	CertFile, KeyFile string
	// KeyType is the key type of a CA generated now; an existing CA keeps
	// its key. Zero means KeyP256.
	KeyType KeyAlgorithm
	// Lifetime is the validity of a CA generated now. Zero means
	// DefaultCALifetime.
	Lifetime time.Duration
	// ReplaceWithin makes OpenCA replace a generated CA that expires within
	// this duration: the old files are moved aside as
	// "ca.crt.expired-<timestamp>" and a new CA is created (clients must then
	// trust the new one). An expired generated CA is always replaced. Zero
	// replaces only expired CAs. A user-provided CA is never replaced.
	ReplaceWithin time.Duration
	// Logger receives notices about created, replaced and corrupt CAs. Nil
	// discards them.
	Logger *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of serial numbers. Nil means crypto/rand.Reader.
	Rand io.Reader
}

// CA is a certificate authority that signs leaf certificates. Its methods are
// safe for concurrent use; a CA never changes after OpenCA returns it.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte   // every certificate of the CA file, never a key
	chain   [][]byte // certificates served after a leaf: those not self-signed
	source  string   // file the CA was read from, for messages
	// generated is true for a CA that flowgate created in its state directory.
	generated bool
}

// OpenCA returns the CA that opts describe: the user-provided one, or the
// one generated in StateDir, which it creates (and persists atomically) when
// absent. A corrupt state file is moved aside as "<name>.corrupt-<timestamp>",
// reported on the logger, and replaced by a new CA.
func OpenCA(opts CAOptions) (*CA, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = DefaultCALifetime
	}
	keyType, err := ParseKeyAlgorithm(string(opts.KeyType))
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	opts.KeyType = keyType
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, fmt.Errorf("CA certificate and key files must be configured together (got certificate %q, key %q)", opts.CertFile, opts.KeyFile)
	}
	if opts.CertFile != "" {
		return loadUserCA(opts.CertFile, opts.KeyFile, opts.Now())
	}
	if opts.StateDir == "" {
		return nil, errors.New("no state directory for the CA: set one or configure a CA certificate and key file")
	}
	if err := ensureStateDir(opts.StateDir); err != nil {
		return nil, err
	}
	certPath := filepath.Join(opts.StateDir, CACertFileName)
	keyPath := filepath.Join(opts.StateDir, CAKeyFileName)
	now := opts.Now()

	pair, err := loadStatePair(certPath, keyPath)
	var corrupt *corruptStateError
	switch {
	case err == nil:
		ca, err := caFromPair(pair, certPath, now)
		if err != nil {
			corrupt = &corruptStateError{paths: []string{certPath, keyPath}, err: err}
			break
		}
		ca.generated = true
		if now.Add(opts.ReplaceWithin).Before(ca.cert.NotAfter) {
			return ca, nil
		}
		moved, err := moveAside([]string{certPath, keyPath}, "expired", now)
		if err != nil {
			return nil, fmt.Errorf("replacing the expiring CA: %w", err)
		}
		opts.Logger.Warn("the local CA expires soon; replacing it: clients must trust the new CA",
			"cert", certPath, "not_after", ca.cert.NotAfter, "moved_to", moved)
	case errors.Is(err, errStateMissing):
	case errors.As(err, &corrupt):
	default:
		return nil, fmt.Errorf("loading the CA: %w", err)
	}
	if corrupt != nil {
		moved, err := moveAside(corrupt.paths, "corrupt", now)
		if err != nil {
			return nil, fmt.Errorf("the CA in %q is corrupt (%v) and cannot be moved aside: %w", opts.StateDir, corrupt.err, err)
		}
		opts.Logger.Error("the local CA is corrupt; moved it aside and creating a new one: clients must trust the new CA",
			"cert", certPath, "err", corrupt.err, "moved_to", moved)
	}
	return createCA(certPath, keyPath, opts, now)
}

// createCA generates a self-signed CA and persists it.
func createCA(certPath, keyPath string, opts CAOptions, now time.Time) (*CA, error) {
	key, err := opts.KeyType.generate()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial(opts.Rand)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"flowgate"},
			CommonName:   fmt.Sprintf("flowgate local CA %x", ski[:4]),
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(opts.Lifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(opts.Rand, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the new CA certificate: %w", err)
	}
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	certPEM := encodeCertsPEM(der)
	if err := writePairAtomic(certPath, keyPath, certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("saving the new CA (clients could not keep trusting it across restarts): %w", err)
	}
	opts.Logger.Info("created a local CA; make clients trust its certificate",
		"cert", certPath, "serial", SerialHex(cert), "not_after", cert.NotAfter)
	return &CA{cert: cert, key: key, certPEM: certPEM, source: certPath, generated: true}, nil
}

// loadUserCA reads a CA that the user provides.
func loadUserCA(certFile, keyFile string, now time.Time) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading CA %q with key %q: %w", certFile, keyFile, err)
	}
	return caFromPair(&pair, certFile, now)
}

// caFromPair checks that pair can act as a CA and wraps it.
func caFromPair(pair *tls.Certificate, source string, now time.Time) (*CA, error) {
	cert := pair.Leaf
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%q is not a CA certificate (basic constraints CA:TRUE missing)", source)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA certificate %q may not sign certificates (key usage keyCertSign missing)", source)
	}
	if !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("CA certificate %q expired at %s: replace it", source, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key for %q cannot sign (%T)", source, pair.PrivateKey)
	}
	ca := &CA{cert: cert, key: key, certPEM: encodeCertsPEM(pair.Certificate...), source: source}
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parsing CA certificate chain in %q: %w", source, err)
		}
		if !bytes.Equal(c.RawIssuer, c.RawSubject) {
			ca.chain = append(ca.chain, der)
		}
	}
	return ca, nil
}

// Certificate returns the CA certificate. It must not be modified.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertificatePEM returns the CA certificate (and, for a user-provided CA, the
// certificates that followed it in its file) as PEM. It never contains a key.
func (ca *CA) CertificatePEM() []byte { return bytes.Clone(ca.certPEM) }

// LeafOptions describes a leaf certificate to issue.
type LeafOptions struct {
	// Hosts are the DNS names and IP addresses the certificate covers; the
	// first DNS name is also the subject common name. Required.
	Hosts []string
	// KeyType is the leaf's key type. Zero means KeyP256.
	KeyType KeyAlgorithm
	// Lifetime is how long the certificate is valid from now (NotBefore is
	// backdated one hour on top). Zero means DefaultLeafLifetime; at most
	// MaxLeafLifetime.
	Lifetime time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of the serial number. Nil means crypto/rand.Reader.
	Rand io.Reader
}

// KeyPair is an issued certificate with its private key.
type KeyPair struct {
	// Certificate is ready for tls.Config: the leaf (parsed in Leaf), any
	// intermediate CA certificates, and the private key.
	Certificate *tls.Certificate
	// CertPEM is the leaf followed by any intermediate CA certificates.
	CertPEM []byte
	// KeyPEM is the private key in PKCS #8 PEM.
	KeyPEM []byte
}

// WriteFiles writes the certificate (mode 0644) and key (mode 0600)
// atomically: each file is replaced whole, and neither is replaced unless both
// could be staged.
func (kp *KeyPair) WriteFiles(certPath, keyPath string) error {
	return writePairAtomic(certPath, keyPath, kp.CertPEM, kp.KeyPEM)
}

// Issue creates a new key and a leaf certificate signed by the CA for TLS
// server use. It fails when the CA would expire before the leaf.
func (ca *CA) Issue(opts LeafOptions) (*KeyPair, error) {
	req, err := opts.prepare()
	if err != nil {
		return nil, err
	}
	key, err := req.keyType.generate()
	if err != nil {
		return nil, err
	}
	return issueLeaf(ca, key, req)
}

// SelfSign creates a new key and a self-signed leaf certificate for TLS server
// use (no CA involved): what `openssl req -x509 -nodes -newkey` makes, except
// that it is not marked as a CA, which browsers reject for servers. Clients
// must trust this very certificate, so each new one needs trusting again.
func SelfSign(opts LeafOptions) (*KeyPair, error) {
	req, err := opts.prepare()
	if err != nil {
		return nil, err
	}
	key, err := req.keyType.generate()
	if err != nil {
		return nil, err
	}
	return issueLeaf(nil, key, req)
}

// leafRequest is a validated LeafOptions.
type leafRequest struct {
	hosts     hostSet
	keyType   KeyAlgorithm
	notBefore time.Time
	notAfter  time.Time
	rand      io.Reader
}

func (opts LeafOptions) prepare() (leafRequest, error) {
	hosts, err := parseHosts(opts.Hosts)
	if err != nil {
		return leafRequest{}, err
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = DefaultLeafLifetime
	}
	if lifetime < 0 || lifetime > MaxLeafLifetime {
		return leafRequest{}, fmt.Errorf("leaf lifetime %s out of range: at most %d days", lifetime, MaxLeafLifetime/(24*time.Hour))
	}
	keyType, err := ParseKeyAlgorithm(string(opts.KeyType))
	if err != nil {
		return leafRequest{}, err
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	t := now()
	return leafRequest{hosts: hosts, keyType: keyType, notBefore: t.Add(-backdate), notAfter: t.Add(lifetime), rand: r}, nil
}

// issueLeaf signs a leaf for key with ca, or self-signs it when ca is nil.
func issueLeaf(ca *CA, key crypto.Signer, req leafRequest) (*KeyPair, error) {
	serial, err := randomSerial(req.rand)
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"flowgate"}, CommonName: req.hosts.commonName()},
		NotBefore:             req.notBefore,
		NotAfter:              req.notAfter,
		KeyUsage:              leafKeyUsage(key.Public()),
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              req.hosts.dns,
		IPAddresses:           req.hosts.ips,
		SubjectKeyId:          ski,
	}
	parent, signer := tmpl, key
	var chain [][]byte
	if ca != nil {
		if req.notAfter.After(ca.cert.NotAfter) {
			return nil, fmt.Errorf("CA %q expires at %s, before the new certificate would (%s): replace the CA or shorten the certificate lifetime",
				ca.source, ca.cert.NotAfter.UTC().Format(time.RFC3339), req.notAfter.UTC().Format(time.RFC3339))
		}
		parent, signer, chain = ca.cert, ca.key, ca.chain
		tmpl.AuthorityKeyId = ca.cert.SubjectKeyId
	}
	der, err := x509.CreateCertificate(req.rand, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", req.hosts, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the new certificate: %w", err)
	}
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{
		Certificate: &tls.Certificate{
			Certificate: append([][]byte{der}, chain...),
			PrivateKey:  key,
			Leaf:        leaf,
		},
		CertPEM: encodeCertsPEM(append([][]byte{der}, chain...)...),
		KeyPEM:  keyPEM,
	}, nil
}

// randomSerial returns a positive serial number of 128 random bits.
func randomSerial(r io.Reader) (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("reading random serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}
