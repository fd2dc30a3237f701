package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"
)

// KeyAlgorithm selects the key type of a generated key: "p256", "p384",
// "rsa2048" or "rsa3072". The zero value means KeyP256.
type KeyAlgorithm string

// Key algorithms the issuer and `flowgate cert issue` can generate.
const (
	// KeyP256 is ECDSA on NIST P-256: small, fast, accepted by every
	// current TLS client. The default.
	KeyP256 KeyAlgorithm = "p256"
	// KeyP384 is ECDSA on NIST P-384.
	KeyP384 KeyAlgorithm = "p384"
	// KeyRSA2048 is RSA with a 2048-bit modulus, for old clients that do not
	// speak ECDSA. It is what `openssl req -newkey rsa:2048` makes.
	KeyRSA2048 KeyAlgorithm = "rsa2048"
	// KeyRSA3072 is RSA with a 3072-bit modulus. Generating one takes a
	// noticeable fraction of a second.
	KeyRSA3072 KeyAlgorithm = "rsa3072"
)

// KeyAlgorithms lists every supported KeyAlgorithm, the default first.
var KeyAlgorithms = []KeyAlgorithm{KeyP256, KeyP384, KeyRSA2048, KeyRSA3072}

// ParseKeyAlgorithm parses a key type name as used in the configuration and
// on the command line. The empty string yields KeyP256.
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	k := KeyAlgorithm(strings.ToLower(strings.TrimSpace(s)))
	if k == "" {
		return KeyP256, nil
	}
	for _, known := range KeyAlgorithms {
		if k == known {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown key type %q: use one of p256, p384, rsa2048, rsa3072", s)
}

// orDefault returns k, or KeyP256 when k is empty.
func (k KeyAlgorithm) orDefault() KeyAlgorithm {
	if k == "" {
		return KeyP256
	}
	return k
}

// generate creates a new private key of type k. Since Go 1.26 key generation
// always draws from the operating system's secure random source.
func (k KeyAlgorithm) generate() (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch k.orDefault() {
	case KeyP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyP384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyRSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA3072:
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("unknown key type %q", k)
	}
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", k.orDefault(), err)
	}
	return key, nil
}

// keyAlgorithmOf names the KeyAlgorithm of a public key, or "" when the key
// is of a type or size the issuer does not generate.
func keyAlgorithmOf(pub crypto.PublicKey) KeyAlgorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return KeyP256
		case elliptic.P384():
			return KeyP384
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return KeyRSA2048
		case 3072:
			return KeyRSA3072
		}
	}
	return ""
}

// leafKeyUsage is the key usage of a TLS server certificate for pub: RSA
// keys also allow key encipherment (RSA key exchange in TLS 1.2 clients).
func leafKeyUsage(pub crypto.PublicKey) x509.KeyUsage {
	if _, ok := pub.(*rsa.PublicKey); ok {
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	return x509.KeyUsageDigitalSignature
}

// encodeKeyPEM encodes key as a PKCS #8 "PRIVATE KEY" PEM block, the format
// OpenSSL 3, Java and Go all read.
func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// encodeCertsPEM encodes DER certificates as consecutive PEM blocks.
func encodeCertsPEM(ders ...[]byte) []byte {
	var out []byte
	for _, der := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// subjectKeyID computes a key identifier for pub as RFC 7093 section 2
// method 1 describes: the leftmost 160 bits of the SHA-256 hash of the
// subjectPublicKey bit string.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	var spki struct {
		Algorithm        pkix.AlgorithmIdentifier
		SubjectPublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("decoding public key: %w", err)
	}
	sum := sha256.Sum256(spki.SubjectPublicKey.Bytes)
	return sum[:20], nil
}
