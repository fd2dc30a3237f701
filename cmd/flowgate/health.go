package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// runHealth implements `flowgate health`: it asks a running flowgate's admin
// /readyz and exits non-zero unless it is ready. Container images use it as
// their HEALTHCHECK, so no shell or curl is needed.
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flowgate health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def, ok := os.LookupEnv(envName("admin-addr"))
	if !ok {
		def = "127.0.0.1:9100"
	}
	addr := fs.String("admin-addr", def, "admin listener `ADDR` of the flowgate to ask (env FLOWGATE_ADMIN_ADDR)")
	path := fs.String("path", "/readyz", "`PATH` to ask: /readyz (ready to serve) or /healthz (alive)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this `DURATION`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: flowgate health [flags]\n\nAsk a running flowgate whether it is ready; exit 0 if so, 1 if not.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("--admin-addr %q: %w", *addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + *path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking %s: %w (is flowgate running with its admin listener there?)", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprint(stdout, string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
