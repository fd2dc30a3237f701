// Command flowbench measures flowgate side by side with nginx, HAProxy and
// Caddy, each configured the same way (TLS termination with one ECDSA P-256
// certificate, an upstream keep-alive pool, the forwarding headers,
// WebSocket, HTTP/2, no access log) and pinned to one core.
// test/bench/run.sh installs the tools and calls it; run that script rather
// than this command.
//
//	flowbench run --flowgate BIN --out DIR [--quick]   the benchmark
//	flowbench upstream --addr ADDR[,ADDR]              fast stand-in upstreams, one process
//	flowbench report --out DIR                         re-render DIR/runs.jsonl
//	flowbench ws-hold --addr HOST:PORT --conns N       open N idle WebSockets and hold them
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "flowbench:", err)
		os.Exit(1)
	}
}

const usage = `Usage:
  flowbench run --flowgate BIN [--out DIR] [--quick] [--runs N] [--duration D]
  flowbench upstream [--addr ADDR[,ADDR...]] [--name NAME[,NAME...]]
  flowbench report [--out DIR]
  flowbench ws-hold --addr HOST:PORT [--conns N] [--hold D]
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "run":
		return runBench(ctx, args[1:], stdout, stderr)
	case "upstream":
		return runUpstream(ctx, args[1:], stdout)
	case "report":
		return runReport(args[1:], stdout)
	case "ws-hold":
		return runWSHold(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
