package certs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadPair(t *testing.T) {
	t.Parallel()
	root := newFixtureCA(t, "load root")
	inter := root.issue(t, fixtureSpec{isCA: true})
	ecdsaLeaf := root.issue(t, fixtureSpec{})
	chained := inter.asCA().issue(t, fixtureSpec{})
	other := root.issue(t, fixtureSpec{})
	rsaLeaf := root.issue(t, fixtureSpec{key: "rsa2048"})
	edLeaf := root.issue(t, fixtureSpec{key: "ed25519"})
	weak := root.issue(t, fixtureSpec{key: "rsa1024"})
	p224 := root.issue(t, fixtureSpec{key: "p224"})
	expired := root.issue(t, fixtureSpec{notAfter: time.Now().Add(-time.Minute)})

	sec1, err := x509.MarshalECPrivateKey(ecdsaLeaf.key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PrivateKey(rsaLeaf.key.(*rsa.PrivateKey))
	// What "openssl ecparam -genkey" writes: parameters, then the key.
	ecParams := fixtureJoin(fixturePEM("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), fixturePEM("EC PRIVATE KEY", sec1))

	tests := []struct {
		name       string
		cert, key  []byte
		combined   bool // cert and key in one file
		noCertFile bool
		wantSerial string
		wantErr    error  // errors.Is target; nil means success
		wantText   string // must appear in the error
	}{
		{name: "ecdsa", cert: ecdsaLeaf.certPEM, key: ecdsaLeaf.keyPEM, wantSerial: ecdsaLeaf.serial},
		{name: "rsa", cert: rsaLeaf.certPEM, key: rsaLeaf.keyPEM, wantSerial: rsaLeaf.serial},
		{name: "ed25519", cert: edLeaf.certPEM, key: edLeaf.keyPEM, wantSerial: edLeaf.serial},
		{name: "sec1 key", cert: ecdsaLeaf.certPEM, key: fixturePEM("EC PRIVATE KEY", sec1), wantSerial: ecdsaLeaf.serial},
		{name: "ec parameters then key", cert: ecdsaLeaf.certPEM, key: ecParams, wantSerial: ecdsaLeaf.serial},
		{name: "pkcs1 key", cert: rsaLeaf.certPEM, key: fixturePEM("RSA PRIVATE KEY", pkcs1), wantSerial: rsaLeaf.serial},
		{name: "chain in order", cert: fixtureJoin(chained.certPEM, inter.certPEM), key: chained.keyPEM, wantSerial: chained.serial},
		{name: "chain with root", cert: fixtureJoin(chained.certPEM, inter.certPEM, root.certPEM), key: chained.keyPEM, wantSerial: chained.serial},
		{name: "combined file", cert: fixtureJoin(ecdsaLeaf.certPEM, ecdsaLeaf.keyPEM), combined: true, wantSerial: ecdsaLeaf.serial},
		{name: "text around blocks", cert: fixtureJoin([]byte("subject=CN=x\n"), ecdsaLeaf.certPEM), key: ecdsaLeaf.keyPEM, wantSerial: ecdsaLeaf.serial},

		{name: "chain out of order", cert: fixtureJoin(inter.certPEM, chained.certPEM), key: chained.keyPEM, wantErr: ErrChainOrder, wantText: "leaf first"},
		{name: "chain missing link", cert: fixtureJoin(chained.certPEM, root.certPEM), key: chained.keyPEM, wantErr: ErrChainOrder, wantText: "certificate 0"},
		{name: "key of another cert", cert: ecdsaLeaf.certPEM, key: other.keyPEM, wantErr: ErrKeyMismatch, wantText: "key.pem"},
		{name: "expired", cert: expired.certPEM, key: expired.keyPEM, wantErr: ErrExpired, wantText: "expired at"},
		{name: "rsa 1024", cert: weak.certPEM, key: weak.keyPEM, wantErr: ErrWeakKey, wantText: "1024 bits"},
		{name: "p224", cert: p224.certPEM, key: p224.keyPEM, wantErr: ErrWeakKey, wantText: "P-224"},
		{name: "garbage cert", cert: []byte("not a certificate\n"), key: ecdsaLeaf.keyPEM, wantErr: ErrNoPEM, wantText: "cert.pem"},
		{name: "empty cert", cert: nil, key: ecdsaLeaf.keyPEM, wantErr: ErrNoPEM, wantText: "cert.pem"},
		{name: "truncated cert", cert: ecdsaLeaf.certPEM[:len(ecdsaLeaf.certPEM)/2], key: ecdsaLeaf.keyPEM, wantErr: ErrNoPEM, wantText: "truncated"},
		{name: "truncated intermediate", cert: fixtureJoin(chained.certPEM, inter.certPEM[:len(inter.certPEM)-40]), key: chained.keyPEM, wantErr: ErrNoPEM, wantText: "truncated"},
		{name: "corrupt cert body", cert: fixturePEM("CERTIFICATE", []byte("junk")), key: ecdsaLeaf.keyPEM, wantText: "parsing certificate 0"},
		{name: "garbage key", cert: ecdsaLeaf.certPEM, key: []byte("not a key"), wantErr: ErrNoPEM, wantText: "key.pem"},
		{name: "truncated key", cert: ecdsaLeaf.certPEM, key: ecdsaLeaf.keyPEM[:len(ecdsaLeaf.keyPEM)/2], wantErr: ErrNoPEM, wantText: "truncated"},
		{name: "corrupt key body", cert: ecdsaLeaf.certPEM, key: fixturePEM("PRIVATE KEY", []byte("junk")), wantText: "not a PKCS#8"},
		{name: "missing cert file", noCertFile: true, key: ecdsaLeaf.keyPEM, wantErr: fs.ErrNotExist, wantText: "reading certificate file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			certFile := filepath.Join(dir, "cert.pem")
			keyFile := filepath.Join(dir, "key.pem")
			if tt.combined {
				keyFile = certFile
			}
			if !tt.noCertFile {
				fixtureWrite(t, certFile, tt.cert)
			}
			if !tt.combined {
				fixtureWrite(t, keyFile, tt.key)
			}

			cert, err := LoadPair(certFile, keyFile, time.Now())
			if tt.wantErr == nil && tt.wantText == "" {
				if err != nil {
					t.Fatalf("LoadPair: got error %v; want serial %s", err, tt.wantSerial)
				}
				if got := SerialHex(cert.Leaf); got != tt.wantSerial {
					t.Errorf("leaf serial: got %s; want %s", got, tt.wantSerial)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadPair: got serial %s; want an error", SerialHex(cert.Leaf))
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("LoadPair error: got %v; want it to wrap %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("LoadPair error: got %q; want it to mention %q", err, tt.wantText)
			}
		})
	}
}

func TestReadPEMBundle(t *testing.T) {
	t.Parallel()
	ca1, ca2 := newFixtureCA(t, "bundle one"), newFixtureCA(t, "bundle two")
	tests := []struct {
		name     string
		data     []byte
		wantN    int
		wantText string
	}{
		{name: "two", data: fixtureJoin(ca1.certPEM, ca2.certPEM), wantN: 2},
		{name: "empty", data: nil, wantText: "want at least one"},
		{name: "truncated second", data: fixtureJoin(ca1.certPEM, ca2.certPEM[:30]), wantText: "truncated"},
		{name: "corrupt", data: fixturePEM("CERTIFICATE", []byte("junk")), wantText: "parsing certificate 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ca.pem")
			fixtureWrite(t, file, tt.data)
			got, err := ReadPEMBundle(file)
			if tt.wantText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), "CA bundle") {
					t.Fatalf("ReadPEMBundle: got %d certs, error %v; want an error about the CA bundle mentioning %q", len(got), err, tt.wantText)
				}
				return
			}
			if err != nil || len(got) != tt.wantN {
				t.Fatalf("ReadPEMBundle: got %d certs, error %v; want %d certs", len(got), err, tt.wantN)
			}
		})
	}
}

// fixtureWrite writes data or fails the test.
func fixtureWrite(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
