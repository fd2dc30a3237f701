package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// minRSABits is the smallest RSA modulus LoadPair accepts.
const minRSABits = 2048

// LoadPair reads a PEM certificate chain and its PEM private key and accepts
// them only if they can be served: every certificate parses, the chain is in
// order (leaf first, each certificate signed by the next), the key parses and
// belongs to the leaf, the key is RSA of at least 2048 bits, ECDSA on P-256,
// P-384 or P-521, or Ed25519, and the leaf has not expired at now.
//
// certFile and keyFile may name the same file holding both. The returned
// certificate has its Leaf set. Errors name the file, say what is wrong and
// what to do, and wrap one of the Err* reasons of this package or, for a file
// that cannot be read, the cause (errors.Is fs.ErrNotExist, fs.ErrPermission).
func LoadPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	certPEM, keyPEM, err := readPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return parsePair(certFile, keyFile, certPEM, keyPEM, now)
}

// readPair reads both files of a pair, one after the other.
func readPair(certFile, keyFile string) (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(certFile)
	if err != nil {
		return nil, nil, readError("certificate file", certFile, err)
	}
	keyPEM, err = os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, readError("key file", keyFile, err)
	}
	return certPEM, keyPEM, nil
}

// readError explains a file that cannot be read. It drops the path the
// *fs.PathError repeats, keeping its cause for errors.Is (fs.ErrNotExist,
// fs.ErrPermission).
func readError(kind, file string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("reading %s %q: %w; check the path and that flowgate may read it", kind, file, err)
}

// parsePair validates the contents of a pair; see LoadPair.
func parsePair(certFile, keyFile string, certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	chain, err := parseCertificates("certificate file", certFile, certPEM)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("certificate file %q: leaf %q (serial %s) expired at %s: %w; install a renewed certificate",
			certFile, leaf.Subject, SerialHex(leaf), leaf.NotAfter.UTC().Format(time.RFC3339), ErrExpired)
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("certificate file %q: certificate %d (%q) is not signed by certificate %d (%q): %w (%v); list the leaf first, then each issuer in order",
				certFile, i, chain[i].Subject, i+1, chain[i+1].Subject, ErrChainOrder, err)
		}
	}
	if err := checkPublicKey(leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("certificate file %q: %w; use RSA of at least %d bits, ECDSA P-256/P-384/P-521 or Ed25519", certFile, err, minRSABits)
	}

	key, err := parseKey(keyFile, keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("key file %q does not belong to the leaf of certificate file %q (serial %s): %w; install the matching key (a writer replacing both files is retried on its next change)",
			keyFile, certFile, SerialHex(leaf), ErrKeyMismatch)
	}

	// The checks above cover what tls.X509KeyPair checks; it stays the final
	// word on what the TLS stack accepts.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate file %q with key file %q: %w", certFile, keyFile, err)
	}
	cert.Leaf = leaf
	return &cert, nil
}

// parseCertificates parses every CERTIFICATE block of data, in order. Blocks
// of other types (a key in a combined file) are skipped. kind names the file
// in errors ("certificate file", "CA bundle").
func parseCertificates(kind, file string, data []byte) ([]*x509.Certificate, error) {
	blocks, truncated := decodePEM(data)
	var chain []*x509.Certificate
	for _, b := range blocks {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s %q: parsing certificate %d: %w; the file is corrupt or not a certificate", kind, file, len(chain), err)
		}
		chain = append(chain, c)
	}
	if truncated {
		return nil, fmt.Errorf("%s %q: %w: a PEM block is truncated or malformed; the file may be half written or corrupt", kind, file, ErrNoPEM)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%s %q: %w: want at least one \"CERTIFICATE\" block; check that the path names a PEM certificate", kind, file, ErrNoPEM)
	}
	return chain, nil
}

// parseKey parses the first private key block of data.
func parseKey(file string, data []byte) (crypto.Signer, error) {
	blocks, truncated := decodePEM(data)
	for _, b := range blocks {
		if b.Type != "PRIVATE KEY" && !strings.HasSuffix(b.Type, " PRIVATE KEY") {
			continue
		}
		key, err := parsePrivateKeyDER(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %q: parsing %q block: %w; the file is corrupt or not a private key", file, b.Type, err)
		}
		return key, nil
	}
	if truncated {
		return nil, fmt.Errorf("key file %q: %w: a PEM block is truncated or malformed; the file may be half written or corrupt", file, ErrNoPEM)
	}
	return nil, fmt.Errorf("key file %q: %w: want a \"PRIVATE KEY\" block; check that the path names the PEM private key", file, ErrNoPEM)
}

// parsePrivateKeyDER tries the encodings a PEM private key comes in.
func parsePrivateKeyDER(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("%w: PKCS#8 key of type %T", ErrWeakKey, k)
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, PKCS#1 or SEC 1 private key")
}

// checkPublicKey refuses key types and sizes that cannot be served safely.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("%w: RSA key of %d bits", ErrWeakKey, bits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("%w: ECDSA curve %s", ErrWeakKey, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("%w: public key of type %T", ErrWeakKey, k)
	}
	return nil
}

// decodePEM returns every PEM block of data. truncated reports a "-----BEGIN"
// that does not start a complete block: pem.Decode stops there silently, and
// serving only the blocks before it would drop the rest of a chain.
func decodePEM(data []byte) (blocks []*pem.Block, truncated bool) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	return blocks, bytes.Contains(rest, []byte("-----BEGIN"))
}

// ReadPEMBundle reads every certificate of a PEM bundle, such as the CA
// bundle used to verify client certificates. A bundle with no certificate,
// a truncated block or a certificate that does not parse is refused.
func ReadPEMBundle(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, readError("CA bundle", file, err)
	}
	return parseBundle(file, data)
}

// parseBundle parses the certificates of a CA bundle's contents.
func parseBundle(file string, data []byte) ([]*x509.Certificate, error) {
	return parseCertificates("CA bundle", file, data)
}
