package certs_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/flowgate/flowgate/certs"
)

// ExampleNewIssuer serves HTTPS with a certificate from the built-in issuer
// and rotates it until the context ends.
func ExampleNewIssuer() {
	stateDir, err := os.MkdirTemp("", "flowgate-state-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(stateDir)

	iss, err := certs.NewIssuer(certs.IssuerOptions{
		StateDir: stateDir, // usually certs.DefaultStateDir()
		Hosts:    []string{"flowable.example.com", "localhost", "127.0.0.1"},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- iss.Run(ctx) }()

	srv := &http.Server{TLSConfig: &tls.Config{GetCertificate: iss.GetCertificate}}
	_ = srv // srv.ListenAndServeTLS("", "") would serve the issued leaf.

	// Clients trust this once; it survives every rotation of the leaf.
	caPEM := iss.CACertificatePEM()
	fmt.Println("CA:", strings.HasPrefix(string(caPEM), "-----BEGIN CERTIFICATE-----"), "served at", certs.CACertificatePath)

	st := iss.Status()[0]
	fmt.Println(st.Source, st.DNSNames, st.IPAddresses, st.KeyType, st.NotAfter.Sub(st.NotBefore))

	cancel()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output:
	// CA: true served at /.well-known/flowgate/ca.crt
	// issuer:ca [flowable.example.com localhost] [127.0.0.1] ECDSA P-256 721h0m0s
}
