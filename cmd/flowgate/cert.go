package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowgate/flowgate/certs"
)

const certUsage = `Usage: flowgate cert COMMAND [flags]

Commands:
  issue   issue a certificate and key into a directory (replaces openssl req -x509)
  show    describe the certificates in a PEM file or served by HOST:PORT
  ca      print the built-in CA certificate (creating the CA if absent)

Run "flowgate cert COMMAND --help" for a command's flags.
`

// Files that `flowgate cert issue` writes into --out.
const (
	issueCertFile = "cert.pem"
	issueKeyFile  = "key.pem"
	issueCAFile   = "ca.pem"
)

// runCert implements `flowgate cert`.
func runCert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, certUsage)
		return errors.New("cert: no command given")
	}
	switch args[0] {
	case "issue":
		return runCertIssue(args[1:], stdout, stderr)
	case "show":
		return runCertShow(ctx, args[1:], stdout, stderr)
	case "ca":
		return runCertCA(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, certUsage)
		return nil
	}
	fmt.Fprint(stderr, certUsage)
	return fmt.Errorf("cert: unknown command %q", args[0])
}

// certFlagSet makes the flag set of a cert subcommand with a usage text
// that starts with synopsis and about.
func certFlagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("cert "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: flowgate cert %s %s\n\n%s\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseCertFlags parses args, allowing flags after positional arguments, and
// returns the positional ones. It prints the usage to stdout for --help
// (and reports help as true) and to stderr for a bad flag.
func parseCertFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (positional []string, help bool, err error) {
	fs.SetOutput(io.Discard)
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, true, nil
		}
		if err != nil {
			fs.SetOutput(stderr)
			fs.Usage()
			return nil, false, fmt.Errorf("%s: %w", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, false, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// hostsFlag collects repeatable, comma-separated --host values.
type hostsFlag []string

func (h *hostsFlag) String() string { return strings.Join(*h, ",") }

func (h *hostsFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*h = append(*h, part)
		}
	}
	return nil
}

func runCertIssue(args []string, stdout, stderr io.Writer) error {
	fs := certFlagSet("issue", "--out DIR --host NAME [--host NAME...] [flags]",
		"Issues a TLS server certificate for the given host names and IP addresses, signed by\n"+
			"the built-in CA in --state-dir (created if absent), or self-signed with --self-signed.\n"+
			"Writes DIR/"+issueCertFile+", DIR/"+issueKeyFile+" (mode 0600) and, unless self-signed, DIR/"+issueCAFile+"\n"+
			"(the CA certificate clients must trust). Existing files are replaced atomically.\n"+
			"This replaces: openssl req -x509 -nodes -days 365 -newkey rsa:2048 ...\n")
	out := fs.String("out", "", "write the certificate and key into `DIR` (created if missing)")
	var hosts hostsFlag
	fs.Var(&hosts, "host", "DNS `NAME` or IP address the certificate covers; repeatable or comma-separated")
	days := fs.Int("days", 365, "validity in `DAYS` (at most 825)")
	key := fs.String("key", string(certs.KeyP256), "key `TYPE`: p256, p384, rsa2048 or rsa3072 (rsa2048 for old clients); also the type of a CA created now")
	selfSigned := fs.Bool("self-signed", false, "issue a self-signed certificate instead of one from the CA")
	stateDir := fs.String("state-dir", certs.DefaultStateDir(), "`DIR` of the built-in CA, shared with flowgate run")
	rest, help, err := parseCertFlags(fs, args, stdout, stderr)
	if help || err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("cert issue: unexpected argument %q (hosts go in --host)", rest[0])
	}
	if *out == "" {
		return errors.New("cert issue: --out DIR is required")
	}
	if len(hosts) == 0 {
		return errors.New("cert issue: at least one --host is required, e.g. --host flowable.example.com --host localhost")
	}
	keyType, err := certs.ParseKeyAlgorithm(*key)
	if err != nil {
		return fmt.Errorf("cert issue: %w", err)
	}
	if *days <= 0 || time.Duration(*days)*24*time.Hour > certs.MaxLeafLifetime {
		return fmt.Errorf("cert issue: --days %d out of range: use 1 to %d", *days, certs.MaxLeafLifetime/(24*time.Hour))
	}
	leafOpts := certs.LeafOptions{Hosts: hosts, KeyType: keyType, Lifetime: time.Duration(*days) * 24 * time.Hour}

	var (
		kp *certs.KeyPair
		ca *certs.CA
	)
	if *selfSigned {
		kp, err = certs.SelfSign(leafOpts)
	} else {
		ca, err = certs.OpenCA(certs.CAOptions{
			StateDir: *stateDir,
			KeyType:  keyType,
			Logger:   slog.New(slog.NewTextHandler(stderr, nil)),
		})
		if err == nil {
			kp, err = ca.Issue(leafOpts)
		}
	}
	if err != nil {
		return fmt.Errorf("cert issue: %w", err)
	}

	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("cert issue: creating output directory: %w", err)
	}
	certPath, keyPath := filepath.Join(*out, issueCertFile), filepath.Join(*out, issueKeyFile)
	if err := kp.WriteFiles(certPath, keyPath); err != nil {
		return fmt.Errorf("cert issue: %w", err)
	}
	leaf := kp.Certificate.Leaf
	fmt.Fprintf(stdout, "wrote %s (serial %s, valid until %s)\n", certPath, certs.SerialHex(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "wrote %s (private key, mode 0600)\n", keyPath)
	if ca != nil {
		caPath := filepath.Join(*out, issueCAFile)
		if err := certs.WriteFileAtomic(caPath, ca.CertificatePEM(), 0o644); err != nil {
			return fmt.Errorf("cert issue: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s (CA certificate from %s: make clients trust it)\n", caPath, *stateDir)
	} else {
		fmt.Fprintf(stdout, "self-signed: clients must trust %s itself\n", certPath)
	}
	return nil
}

func runCertShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := certFlagSet("show", "FILE|HOST:PORT [flags]",
		"Describes each certificate in a PEM (or DER) file, or in the chain a TLS server at\n"+
			"HOST:PORT presents. The server's certificate is not verified: this reads it only.\n"+
			"Private keys in FILE are skipped, never printed.\n")
	timeout := fs.Duration("timeout", 10*time.Second, "give up connecting to HOST:PORT after `DURATION`")
	serverName := fs.String("server-name", "", "SNI `NAME` to send (default: the HOST of HOST:PORT)")
	rest, help, err := parseCertFlags(fs, args, stdout, stderr)
	if help || err != nil {
		return err
	}
	if len(rest) != 1 {
		fs.SetOutput(stderr)
		fs.Usage()
		return errors.New("cert show: give exactly one FILE or HOST:PORT")
	}
	target := rest[0]

	var chain []*x509.Certificate
	if _, statErr := os.Stat(target); statErr == nil {
		chain, err = readCertificates(target)
	} else if host, port, splitErr := net.SplitHostPort(target); splitErr == nil && port != "" {
		chain, err = fetchCertificates(ctx, target, host, *serverName, *timeout, stdout)
	} else {
		return fmt.Errorf("cert show: %w (for a server, give HOST:PORT)", statErr)
	}
	if err != nil {
		return fmt.Errorf("cert show: %w", err)
	}
	now := time.Now()
	for i, c := range chain {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "Certificate %d of %d\n", i+1, len(chain))
		describeCertificate(stdout, c, now)
	}
	return nil
}

// readCertificates parses every certificate in a PEM file (or a DER one).
func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d in %q: %w", len(out)+1, path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		if der, err := x509.ParseCertificates(data); err == nil && len(der) > 0 {
			return der, nil
		}
		return nil, fmt.Errorf("no certificate found in %q (expected PEM \"CERTIFICATE\" blocks)", path)
	}
	return out, nil
}

// fetchCertificates connects to addr and returns the chain the server
// presents, without verifying it.
func fetchCertificates(ctx context.Context, addr, host, serverName string, timeout time.Duration, stdout io.Writer) ([]*x509.Certificate, error) {
	if serverName == "" && net.ParseIP(host) == nil {
		serverName = host
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		ServerName: serverName,
		// Reading a certificate that the client does not (yet) trust is the
		// point of this command; nothing is sent over the connection.
		InsecureSkipVerify: true,
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	fmt.Fprintf(stdout, "Connected to %s (%s, %s); certificate not verified\n\n",
		addr, tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
	if len(state.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%s presented no certificate", addr)
	}
	return state.PeerCertificates, nil
}

// describeCertificate prints the fields an operator checks.
func describeCertificate(w io.Writer, c *x509.Certificate, now time.Time) {
	var sans []string
	for _, n := range c.DNSNames {
		sans = append(sans, "DNS:"+n)
	}
	for _, ip := range c.IPAddresses {
		sans = append(sans, "IP:"+ip.String())
	}
	for _, u := range c.URIs {
		sans = append(sans, "URI:"+u.String())
	}
	for _, e := range c.EmailAddresses {
		sans = append(sans, "email:"+e)
	}
	if len(sans) == 0 {
		sans = []string{"(none)"}
	}
	isCA := "no"
	if c.IsCA {
		isCA = "yes"
	}
	sum := sha256.Sum256(c.Raw)
	fmt.Fprintf(w, "  Subject:     %s\n", c.Subject)
	fmt.Fprintf(w, "  SANs:        %s\n", strings.Join(sans, ", "))
	fmt.Fprintf(w, "  Issuer:      %s\n", c.Issuer)
	fmt.Fprintf(w, "  Serial:      %s\n", certs.SerialHex(c))
	fmt.Fprintf(w, "  Key type:    %s\n", certs.KeyType(c))
	fmt.Fprintf(w, "  Not before:  %s\n", c.NotBefore.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  Not after:   %s\n", c.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  Days left:   %s\n", daysLeft(c, now))
	fmt.Fprintf(w, "  CA:          %s\n", isCA)
	fmt.Fprintf(w, "  SHA-256:     %X\n", sum)
}

// daysLeft says how many whole days a certificate remains valid.
func daysLeft(c *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return "not valid yet"
	case !now.Before(c.NotAfter):
		return fmt.Sprintf("0 (expired %d days ago)", int(now.Sub(c.NotAfter)/(24*time.Hour)))
	}
	return fmt.Sprintf("%d", int(c.NotAfter.Sub(now)/(24*time.Hour)))
}

func runCertCA(args []string, stdout, stderr io.Writer) error {
	fs := certFlagSet("ca", "[--state-dir DIR]",
		"Prints the PEM certificate of the built-in CA that signs flowgate's certificates, for\n"+
			"clients to trust. Creates the CA in --state-dir if it does not exist yet. (With a\n"+
			"user-provided CA configured, distribute that CA's certificate instead.) A running\n"+
			"flowgate also serves it at "+certs.CACertificatePath+".\n")
	stateDir := fs.String("state-dir", certs.DefaultStateDir(), "`DIR` of the built-in CA, shared with flowgate run")
	rest, help, err := parseCertFlags(fs, args, stdout, stderr)
	if help || err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("cert ca: unexpected argument %q", rest[0])
	}
	ca, err := certs.OpenCA(certs.CAOptions{
		StateDir: *stateDir,
		Logger:   slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		return fmt.Errorf("cert ca: %w", err)
	}
	_, err = stdout.Write(ca.CertificatePEM())
	return err
}
