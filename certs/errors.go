package certs

import "errors"

// Reasons a certificate file is refused. Errors returned by LoadPair,
// ReadPEMBundle and NewFiles wrap one of these (or, for a file that cannot be
// read, its cause such as fs.ErrNotExist), so callers can test them with
// errors.Is.
var (
	// ErrNoPEM means a file holds no PEM block of the expected type.
	ErrNoPEM = errors.New("no PEM data of the expected type")
	// ErrKeyMismatch means the private key does not belong to the leaf
	// certificate. A writer that replaced the certificate but not yet the
	// key causes it for a moment.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
	// ErrChainOrder means a certificate in the chain is not signed by the
	// one that follows it.
	ErrChainOrder = errors.New("certificate chain out of order")
	// ErrExpired means the leaf certificate's NotAfter has passed.
	ErrExpired = errors.New("certificate has expired")
	// ErrWeakKey means the key type or size cannot be served safely.
	ErrWeakKey = errors.New("unsupported or weak key")
)
