// Command flowgate is an HTTPS edge proxy for Flowable: TLS termination with
// hot-swapped or self-issued certificates, HTTP to HTTPS redirect, load
// balancing over static or Consul-discovered nodes, WebSockets, metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "flowgate:", err)
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

// errReported is returned when the failure was already printed.
var errReported = errors.New("reported")

const usage = `flowgate: an HTTPS edge proxy for Flowable

Usage:
  flowgate run     [flags]   serve (flags, FLOWGATE_* variables, or --config FILE)
  flowgate check   [flags]   validate the configuration and print the effective one
  flowgate health  [flags]   ask a running flowgate's admin /readyz (for container health checks)
  flowgate cert    ...       issue, show and export certificates (flowgate cert --help)
  flowgate version           print the version

Run "flowgate COMMAND --help" for a command's flags.
`

// run dispatches a command line. It never exits the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "run":
		return runServe(ctx, args[1:], stdout, stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "health":
		return runHealth(ctx, args[1:], stdout, stderr)
	case "cert":
		return runCert(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "flowgate %s (%s, %s)\n", version, revision(), goVersion())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// parseFlags parses args; the flag package has already printed a parse
// error and the usage, so such an error is returned as errReported.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%w: %v", errReported, err)
	}
	return err
}

// revision is the VCS revision the binary was built from, if known.
func revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				if len(s.Value) > 12 {
					return s.Value[:12]
				}
				return s.Value
			}
		}
	}
	return "unknown"
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}
