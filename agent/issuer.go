package agent

import (
	"log/slog"
	"slices"

	"github.com/flowgate/flowgate/certs"
)

// buildIssuer creates the built-in issuer: a certificate for the server
// names, the configured extra hosts and the defaults (hostname, localhost,
// 127.0.0.1, ::1), kept in the state directory and rotated before expiry.
func (a *Agent) buildIssuer(cfg *Config, log *slog.Logger) (certs.Provider, error) {
	mode, err := certs.ParseIssuerMode(cfg.Issuer.Mode)
	if err != nil {
		return nil, &FieldError{Key: "issuer.mode", Err: err}
	}
	key, err := certs.ParseKeyAlgorithm(cfg.Issuer.KeyType)
	if err != nil {
		return nil, &FieldError{Key: "issuer.key_type", Err: err}
	}
	dir := cfg.StateDir
	if dir == "" {
		dir = certs.DefaultStateDir()
	}
	var hosts []string
	for _, h := range slices.Concat(cfg.ServerNames, cfg.Issuer.Hosts, certs.DefaultHosts()) {
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return certs.NewIssuer(certs.IssuerOptions{
		Mode:         mode,
		StateDir:     dir,
		CACertFile:   cfg.Issuer.CACertFile,
		CAKeyFile:    cfg.Issuer.CAKeyFile,
		KeyType:      key,
		LeafLifetime: cfg.Issuer.LeafLifetime,
		RenewBefore:  cfg.Issuer.RenewBefore,
		Hosts:        hosts,
		Logger:       log,
		Registerer:   a.reg,
		Now:          a.now,
	})
}
