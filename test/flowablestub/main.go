// Command flowablestub is a stand-in Flowable node for flowgate's end-to-end
// tests, browser test and benchmarks. It speaks plain HTTP/1.1 and serves:
//
//	GET /                  an HTML page whose script opens a WebSocket to /ws on
//	                       the same host (wss: when the page came over https),
//	                       sends a message and writes the echo into #echo
//	/headers[/...]         the request as JSON: node, method, host, path, URI,
//	                       protocol, remote address and headers
//	/ws                    a WebSocket echo (text and binary, messages up to 2 MiB)
//	/slow?d=2s             sleeps d (bounded by the request's context), then answers
//	/bytes?n=1024          n bytes; with chunked=1 without Content-Length
//	/echo                  the request body back
//	/actuator/health[/...] {"status":"UP"}, or 503 {"status":"DOWN"} after
//	                       PUT /stub/health with the body DOWN (UP undoes it)
//	/actuator/env          a fake environment with a fake secret, so that a
//	                       missing block at the edge is visible
//
// Every response carries X-Node: <name>. On startup it prints
// "flowablestub listening on ADDR" to stdout (ADDR is the bound address, so
// --addr 127.0.0.1:0 works). SIGTERM or SIGINT stops it after in-flight
// requests finish (at most 5 s).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// The stub's fake secret; tests look for it in responses to prove a leak.
const fakeSecret = "stub-secret-must-not-leak"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "flowablestub:", err)
		os.Exit(1)
	}
}

// run parses flags, listens and serves until ctx is cancelled.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("flowablestub", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen `ADDR` (port 0 picks a free one)")
	name := fs.String("name", "node", "node `NAME`, sent as X-Node on every response")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening on %q: %w", *addr, err)
	}
	srv := &http.Server{
		Handler:           newHandler(*name),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	fmt.Fprintf(stdout, "flowablestub listening on %s name=%s\n", ln.Addr(), *name)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}
