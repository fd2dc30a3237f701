package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/flowgate/flowgate/agent"
	"github.com/flowgate/flowgate/certs"
)

// runCheck implements `flowgate check`, flowgate's `nginx -t`: it validates
// the effective configuration, loads the certificate files it names, and
// prints the configuration with secrets redacted.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs, cf := newConfigFlagSet("check", "Validate the configuration (file, environment and flags) and print the effective configuration with secrets redacted. Exits non-zero naming each bad key or file.", stderr)
	quiet := fs.Bool("quiet", false, "print nothing on success")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("check: unexpected argument %q; flags start with --", fs.Arg(0))
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	err = cfg.Validate()
	if err == nil {
		err = checkCertificates(&cfg)
	}
	if err != nil {
		fmt.Fprintln(stderr, "flowgate: configuration is invalid:")
		for _, e := range flatten(err) {
			fmt.Fprintln(stderr, "  -", e)
		}
		return errReported
	}
	if !*quiet {
		out, err := cfg.Redacted()
		if err != nil {
			return err
		}
		stdout.Write(out)
		fmt.Fprintln(stderr, "flowgate: configuration is valid")
	}
	return nil
}

// checkCertificates loads each configured pair as a reload would.
func checkCertificates(cfg *agent.Config) error {
	var errs []error
	for i, c := range cfg.TLS.Certificates {
		if _, err := certs.LoadPair(c.CertFile, c.KeyFile, time.Now()); err != nil {
			errs = append(errs, fmt.Errorf("tls.certificates[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
