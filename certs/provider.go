package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"time"
)

// Provider supplies the certificates that flowgate's HTTPS listener serves.
//
// GetCertificate must be safe for concurrent use and cheap: it is called on
// every handshake. Run keeps the certificates current (watching files,
// rotating issued leaves) until ctx is cancelled; it returns nil when ctx is
// cancelled and an error only when it cannot go on at all. A Provider returned
// by its constructor already holds a valid certificate: constructors fail fast.
type Provider interface {
	// GetCertificate selects the certificate for a handshake; it has the
	// signature of tls.Config.GetCertificate.
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// Run keeps the certificates current until ctx is cancelled.
	Run(ctx context.Context) error
	// Reload asks for an immediate re-check (SIGHUP). It does not block.
	Reload()
	// Status describes every certificate currently served.
	Status() []Info
}

// ClientCASource is implemented by providers that also supply the CA bundle
// used to verify client certificates (mutual TLS). ClientCAs returns nil when
// no client CA is configured.
type ClientCASource interface {
	ClientCAs() *x509.CertPool
}

// Info describes one served certificate for /status and logs.
type Info struct {
	// Name identifies the certificate entry (file path or "issuer").
	Name        string    `json:"name"`
	Source      string    `json:"source"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	Serial      string    `json:"serial"`
	KeyType     string    `json:"key_type"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	// LastReload is when the certificate was last loaded successfully.
	LastReload time.Time `json:"last_reload,omitzero"`
	// LastError is the most recent reload failure, empty after a success.
	LastError string `json:"last_error,omitempty"`
	// NextRotation is set by providers that rotate on their own schedule.
	NextRotation time.Time `json:"next_rotation,omitzero"`
}
