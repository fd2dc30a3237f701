package certs

import (
	"bytes"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// FuzzLoadPair feeds arbitrary certificate and key file contents to LoadPair:
// it must never panic, and whatever it accepts must complete a real TLS
// handshake serving exactly that leaf.
//
// The committed corpus in testdata/fuzz/FuzzLoadPair holds no private key;
// valid pairs are generated here, at run time.
func FuzzLoadPair(f *testing.F) {
	ca := newFixtureCA(f, "fuzz root")
	inter := ca.issue(f, fixtureSpec{isCA: true})
	for _, spec := range []fixtureSpec{{}, {key: "ed25519"}, {key: "rsa2048"}} {
		p := ca.issue(f, spec)
		f.Add(p.certPEM, p.keyPEM)
	}
	chained := inter.asCA().issue(f, fixtureSpec{})
	f.Add(fixtureJoin(chained.certPEM, inter.certPEM), chained.keyPEM)
	f.Add(fixtureJoin(inter.certPEM, chained.certPEM), chained.keyPEM)
	f.Add(chained.certPEM, inter.keyPEM)

	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		fixtureWrite(t, certFile, certPEM)
		fixtureWrite(t, keyFile, keyPEM)

		cert, err := LoadPair(certFile, keyFile, time.Now())
		if err != nil {
			return
		}
		if cert.Leaf == nil {
			t.Fatal("LoadPair accepted a pair: got a nil Leaf; want the parsed leaf")
		}
		got, err := fuzzHandshake(cert)
		if err != nil {
			t.Fatalf("LoadPair accepted a pair the TLS stack cannot serve: %v", err)
		}
		if !bytes.Equal(got, cert.Leaf.Raw) {
			t.Fatal("handshake: got another leaf; want the one LoadPair returned")
		}
	})
}

// fuzzHandshake serves cert over an in-memory connection and returns the
// leaf the client received.
func fuzzHandshake(cert *tls.Certificate) ([]byte, error) {
	sconn, cconn := net.Pipe()
	defer sconn.Close()
	defer cconn.Close()
	deadline := time.Now().Add(10 * time.Second)
	_ = sconn.SetDeadline(deadline)
	_ = cconn.SetDeadline(deadline)

	srvErr := make(chan error, 1)
	go func() {
		// No session tickets: nothing is written after the handshake, so
		// the unbuffered pipe cannot block the server.
		srv := tls.Server(sconn, &tls.Config{Certificates: []tls.Certificate{*cert}, SessionTicketsDisabled: true})
		err := srv.Handshake()
		if err != nil {
			sconn.Close() // unblock the client
		}
		srvErr <- err
	}()
	cli := tls.Client(cconn, &tls.Config{InsecureSkipVerify: true})
	cliErr := cli.Handshake()
	if cliErr != nil {
		cconn.Close() // unblock the server
	}
	if err := <-srvErr; err != nil {
		return nil, err
	}
	if cliErr != nil {
		return nil, cliErr
	}
	return cli.ConnectionState().PeerCertificates[0].Raw, nil
}
