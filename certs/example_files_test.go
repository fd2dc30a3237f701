package certs_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowgate/flowgate/certs"
)

// A missing or invalid file stops startup with an error that names the file
// and says what to do.
func ExampleNewFiles_failFast() {
	_, err := certs.NewFiles(certs.FilesOptions{
		Pairs:  []certs.Pair{{CertFile: "/nonexistent/tls.crt", KeyFile: "/nonexistent/tls.key"}},
		Logger: slog.New(slog.DiscardHandler),
	})
	fmt.Println(err)
	// Output: reading certificate file "/nonexistent/tls.crt": no such file or directory; check the path and that flowgate may read it
}

// Wiring Files into an HTTPS server: certificates by SNI, client CAs read per
// handshake so a reloaded bundle applies to new connections, Run for the
// watches and SIGHUP for a forced re-check.
func ExampleNewFiles_wiring() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	files, err := certs.NewFiles(certs.FilesOptions{
		Pairs: []certs.Pair{
			{CertFile: "/etc/flowgate/tls/flowable.crt", KeyFile: "/etc/flowgate/tls/flowable.key"},
			{CertFile: "/etc/flowgate/tls/api.crt", KeyFile: "/etc/flowgate/tls/api.key"},
		},
		ClientCAFile: "/etc/flowgate/tls/clients-ca.pem",
		Registerer:   prometheus.DefaultRegisterer,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	go func() { _ = files.Run(ctx) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				files.Reload()
			}
		}
	}()

	base := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: files.GetCertificate}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := files.ClientCAs()
		if pool == nil {
			return nil, nil // use base
		}
		cfg := base.Clone()
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		return cfg, nil
	}
	srv := &http.Server{Addr: ":443", TLSConfig: base}
	_ = srv.ListenAndServeTLS("", "")
}
