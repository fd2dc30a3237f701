package certs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"testing"
)

func TestParseKeyAlgorithm(t *testing.T) {
	tests := []struct {
		in      string
		want    KeyAlgorithm
		wantErr bool
	}{
		{in: "", want: KeyP256},
		{in: "p256", want: KeyP256},
		{in: " P384 ", want: KeyP384},
		{in: "rsa2048", want: KeyRSA2048},
		{in: "RSA3072", want: KeyRSA3072},
		{in: "rsa1024", wantErr: true},
		{in: "ed25519", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKeyAlgorithm(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseKeyAlgorithm(%q) error = %v; want error %t", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseKeyAlgorithm(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestKeyAlgorithmGenerate covers every algorithm but RSA-3072, which the
// issuer tests generate once (it is slow).
func TestKeyAlgorithmGenerate(t *testing.T) {
	tests := []struct {
		alg       KeyAlgorithm
		wantType  string
		wantUsage x509.KeyUsage
	}{
		{alg: "", wantType: "ECDSA P-256", wantUsage: x509.KeyUsageDigitalSignature},
		{alg: KeyP256, wantType: "ECDSA P-256", wantUsage: x509.KeyUsageDigitalSignature},
		{alg: KeyP384, wantType: "ECDSA P-384", wantUsage: x509.KeyUsageDigitalSignature},
		{alg: KeyRSA2048, wantType: "RSA 2048", wantUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			key, err := tt.alg.generate()
			if err != nil {
				t.Fatal(err)
			}
			var got string
			switch k := key.Public().(type) {
			case *ecdsa.PublicKey:
				got = "ECDSA " + k.Curve.Params().Name
			case *rsa.PublicKey:
				got = fmt.Sprintf("RSA %d", k.N.BitLen())
			}
			if got != tt.wantType {
				t.Errorf("generated key type: got %q; want %q", got, tt.wantType)
			}
			if alg := keyAlgorithmOf(key.Public()); alg != tt.alg.orDefault() {
				t.Errorf("keyAlgorithmOf: got %q; want %q", alg, tt.alg.orDefault())
			}
			if u := leafKeyUsage(key.Public()); u != tt.wantUsage {
				t.Errorf("leafKeyUsage: got %v; want %v", u, tt.wantUsage)
			}
			id, err := subjectKeyID(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if len(id) != 20 {
				t.Errorf("subjectKeyID length: got %d; want 20", len(id))
			}
		})
	}
}

func TestSubjectKeyIDDiffers(t *testing.T) {
	a, err := KeyP256.generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := KeyP256.generate()
	if err != nil {
		t.Fatal(err)
	}
	ida, _ := subjectKeyID(a.Public())
	idb, _ := subjectKeyID(b.Public())
	ida2, _ := subjectKeyID(a.Public())
	if string(ida) == string(idb) {
		t.Errorf("subject key IDs of two keys: got equal %x; want different", ida)
	}
	if string(ida) != string(ida2) {
		t.Errorf("subject key ID of one key: got %x then %x; want stable", ida, ida2)
	}
}
