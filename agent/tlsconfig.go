package agent

import (
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
)

// intermediateSuites are Mozilla's "intermediate" TLS 1.2 suites: ECDHE with
// AES-GCM or ChaCha20-Poly1305 only. Go's default TLS 1.2 list still holds
// CBC suites. TLS 1.3 suites are not configurable and all are good.
var intermediateSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serverTLSConfig builds the HTTPS listener's TLS configuration. The
// certificate comes through GetCertificate from the agent's current provider;
// when the provider also supplies client CAs, each handshake gets a config
// that verifies client certificates against the current pool.
func (a *Agent) serverTLSConfig(cfg *Config) *tls.Config {
	tc := &tls.Config{
		MinVersion:             tls.VersionTLS12,
		CipherSuites:           intermediateSuites,
		NextProtos:             []string{"h2", "http/1.1"},
		GetCertificate:         a.getCertificate,
		SessionTicketsDisabled: !cfg.TLS.SessionTickets,
	}
	full, resumed := a.metrics.handshakes.WithLabelValues("false"), a.metrics.handshakes.WithLabelValues("true")
	// VerifyConnection runs after every full or resumed handshake (and is
	// kept by Clone for the client-certificate path); it only counts.
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.DidResume {
			resumed.Inc()
		} else {
			full.Inc()
		}
		return nil
	}
	if cfg.TLS.MinVersion == "1.3" {
		tc.MinVersion = tls.VersionTLS13
	}
	if cfg.TLS.ClientCAFile != "" {
		auth := tls.RequireAndVerifyClientCert
		if cfg.TLS.ClientAuth == "request" {
			auth = tls.VerifyClientCertIfGiven
		}
		base := tc.Clone()
		var cache atomic.Pointer[clientCAConfig]
		tc.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool := a.clientCAs()
			if c := cache.Load(); c != nil && c.pool == pool {
				return c.config, nil
			}
			c := base.Clone()
			c.ClientCAs = pool
			c.ClientAuth = auth
			cache.Store(&clientCAConfig{pool: pool, config: c})
			return c, nil
		}
	}
	return tc
}

type clientCAConfig struct {
	pool   *x509.CertPool
	config *tls.Config
}
