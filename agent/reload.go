package agent

import (
	"fmt"
	"reflect"

	"github.com/flowgate/flowgate/certs"
)

// ReloadFrom loads a configuration with load and applies it with Reload. A
// load failure (an unreadable file, an unknown key) is counted and reported
// like any other rejected reload.
func (a *Agent) ReloadFrom(load func() (Config, error)) error {
	cfg, err := load()
	if err != nil {
		a.metrics.reloads.WithLabelValues("failure").Inc()
		return err
	}
	return a.Reload(cfg)
}

// Reload applies a new configuration without dropping a connection:
// upstreams, certificate files and issuer settings, balancing, policies and
// limits. Everything is built and checked first; if any of it fails, the
// running configuration keeps serving and the error says why. Settings that
// need a restart (listener addresses, TLS protocol settings) are logged.
func (a *Agent) Reload(cfg Config) (err error) {
	defer func() {
		if err != nil {
			a.metrics.reloads.WithLabelValues("failure").Inc()
			return
		}
		a.metrics.reloads.WithLabelValues("success").Inc()
	}()
	if err := cfg.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cfg.Load()
	a.pinPublicPort(&cfg)

	// Build everything that can fail before changing anything.
	var newProvider *providerSlot
	if key := providerKey(&cfg); key != a.provider.Load().key {
		p, err := a.buildProvider(&cfg)
		if err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		newProvider = &providerSlot{p: p, key: key}
	}
	popts, err := a.proxyOptions(&cfg)
	if err != nil {
		return err
	}
	var newSources *sourceSlot
	if key := sourceKey(&cfg); a.sources.Load() == nil || key != a.sources.Load().key {
		if newSources, err = a.buildSources(&cfg); err != nil {
			return err
		}
	}

	// Commit.
	for _, c := range restartOnly(old, &cfg) {
		a.log.Warn("setting changed but needs a restart to apply", "key", c)
	}
	a.proxy.SetOptions(popts)
	a.cfg.Store(&cfg)
	a.redir.Store(newRedirector(&cfg, a.caPEM))
	if newProvider != nil {
		oldSlot := a.provider.Load()
		if a.runCtx != nil {
			a.startProviderLocked(newProvider)
		}
		a.provider.Store(newProvider)
		if oldSlot.cancel != nil {
			oldSlot.cancel()
			<-oldSlot.done
		}
		a.forgetCertificates(oldSlot.p, newProvider.p)
		a.log.Info("certificate source replaced")
	} else {
		// Same settings: SIGHUP still means "look at the files now".
		a.provider.Load().p.Reload()
	}
	if newSources != nil {
		a.stopSourcesLocked()
		a.sources.Store(newSources)
		if a.runCtx != nil {
			a.startSourcesLocked()
		}
	}
	a.log.Info("configuration reloaded")
	return nil
}

// forgetCertificates removes the metric series of certificates the old
// provider served and the new one does not, so that an expiry alert never
// fires for a certificate that is no longer served.
func (a *Agent) forgetCertificates(old, next certs.Provider) {
	keep := make(map[string]bool)
	for _, c := range next.Status() {
		keep[c.Name] = true
	}
	m, err := certs.NewMetrics(a.reg)
	if err != nil {
		a.log.Warn("certificate metrics", "err", err)
		return
	}
	for _, c := range old.Status() {
		if !keep[c.Name] {
			m.Forget(c.Name)
		}
	}
}

// restartOnly lists the settings that differ between two configurations but
// only take effect after a restart.
func restartOnly(old, cfg *Config) []string {
	var out []string
	check := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, key)
		}
	}
	check("listen.https", old.Listen.HTTPS, cfg.Listen.HTTPS)
	check("listen.http", old.Listen.HTTP, cfg.Listen.HTTP)
	check("listen.admin", old.Listen.Admin, cfg.Listen.Admin)
	check("tls.min_version", old.TLS.MinVersion, cfg.TLS.MinVersion)
	check("tls.session_tickets", old.TLS.SessionTickets, cfg.TLS.SessionTickets)
	check("tls.client_auth", old.TLS.ClientAuth, cfg.TLS.ClientAuth)
	check("tls.client_ca_file (on or off)", old.TLS.ClientCAFile == "", cfg.TLS.ClientCAFile == "")
	check("http timeouts and max_header_bytes", []any{old.HTTP.ReadHeaderTimeout, old.HTTP.IdleTimeout, old.HTTP.MaxHeaderBytes, old.HTTP.MaxConnections}, []any{cfg.HTTP.ReadHeaderTimeout, cfg.HTTP.IdleTimeout, cfg.HTTP.MaxHeaderBytes, cfg.HTTP.MaxConnections})
	check("upstream transport settings (apply to new upstreams only)", []any{old.Upstreams.DialTimeout, old.Upstreams.ResponseHeaderTimeout, old.Upstreams.ReadTimeout, old.Upstreams.IdleConnTimeout, old.Upstreams.KeepAlive, old.Upstreams.TLS}, []any{cfg.Upstreams.DialTimeout, cfg.Upstreams.ResponseHeaderTimeout, cfg.Upstreams.ReadTimeout, cfg.Upstreams.IdleConnTimeout, cfg.Upstreams.KeepAlive, cfg.Upstreams.TLS})
	check("http.fast_path", old.HTTP.FastPath, cfg.HTTP.FastPath)
	check("admin.pprof", old.Admin.Pprof, cfg.Admin.Pprof)
	return out
}
