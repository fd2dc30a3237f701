package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/flowgate/flowgate/certs"
	"github.com/flowgate/flowgate/discovery"
)

// providerKey identifies the settings a certificate provider is built from;
// a reload rebuilds the provider only when it changes.
func providerKey(cfg *Config) string {
	b, _ := json.Marshal(struct {
		TLS         TLSConfig
		Issuer      IssuerConfig
		ServerNames []string
		StateDir    string
	}{cfg.TLS, cfg.Issuer, cfg.ServerNames, cfg.StateDir})
	return string(b)
}

// buildProvider creates the certificate provider: watched files when
// certificates are configured, the built-in issuer otherwise. It loads the
// first certificate now, so a bad file or state directory fails here.
func (a *Agent) buildProvider(cfg *Config) (certs.Provider, error) {
	log := a.log.With("component", "certs")
	if len(cfg.TLS.Certificates) > 0 {
		pairs := make([]certs.Pair, 0, len(cfg.TLS.Certificates))
		for _, c := range cfg.TLS.Certificates {
			pairs = append(pairs, certs.Pair{CertFile: c.CertFile, KeyFile: c.KeyFile})
		}
		return certs.NewFiles(certs.FilesOptions{
			Pairs:           pairs,
			ClientCAFile:    cfg.TLS.ClientCAFile,
			RecheckInterval: cfg.TLS.ReloadInterval,
			ExpiryWarning:   cfg.TLS.ExpiryWarning,
			Logger:          log,
			Registerer:      a.reg,
			Now:             a.now,
		})
	}
	return a.buildIssuer(cfg, log)
}

// startProviderLocked runs a provider until the agent stops or the provider
// is replaced. a.mu is held.
func (a *Agent) startProviderLocked(slot *providerSlot) {
	ctx, cancel := context.WithCancel(a.runCtx)
	slot.cancel = cancel
	slot.done = make(chan struct{})
	a.wg.Go(func() {
		defer close(slot.done)
		if err := slot.p.Run(ctx); err != nil {
			a.log.Error("certificate provider stopped; the last certificate keeps serving", "err", err)
		}
	})
}

func (a *Agent) stopProviderLocked() {
	if slot := a.provider.Load(); slot != nil && slot.cancel != nil {
		slot.cancel()
		<-slot.done
	}
}

// sourceSlot is the running set of upstream sources.
type sourceSlot struct {
	key    string
	consul *discovery.Consul
	static []discovery.Upstream
	cancel context.CancelFunc
	done   chan struct{}
}

func sourceKey(cfg *Config) string {
	c := cfg.Consul
	c.Register = RegisterConfig{} // registration does not change the sources
	b, _ := json.Marshal(struct {
		Static []string
		Consul ConsulConfig
	}{cfg.staticList(), c})
	return string(b)
}

// buildSources creates the upstream sources of cfg without starting them.
func (a *Agent) buildSources(cfg *Config) (*sourceSlot, error) {
	static, err := cfg.StaticUpstreams()
	if err != nil {
		return nil, err
	}
	s := &sourceSlot{key: sourceKey(cfg), static: static}
	if len(cfg.Consul.Services) == 0 {
		return s, nil
	}
	c := cfg.Consul
	stale, passing := c.AllowStale, c.PassingOnly
	s.consul, err = discovery.NewConsul(discovery.ConsulOptions{
		ConsulClientOptions: consulClientOptions(&c),
		Services:            c.Services,
		Tags:                c.Tags,
		AllowStale:          &stale,
		PassingOnly:         &passing,
		FailOpen:            c.FailOpen,
		Logger:              a.log.With("component", "consul"),
		Registerer:          a.reg,
		Now:                 a.now,
	})
	if err != nil {
		return nil, &FieldError{Key: "consul", Err: err}
	}
	return s, nil
}

func consulClientOptions(c *ConsulConfig) discovery.ConsulClientOptions {
	return discovery.ConsulClientOptions{
		Address:    c.Address,
		Datacenter: c.Datacenter,
		Token:      c.Token,
		TokenFile:  c.TokenFile,
		TLS: discovery.ConsulTLSOptions{
			CAFile:             c.TLS.CAFile,
			CertFile:           c.TLS.CertFile,
			KeyFile:            c.TLS.KeyFile,
			ServerName:         c.TLS.ServerName,
			InsecureSkipVerify: c.TLS.InsecureSkipVerify,
		},
		Namespace: c.Namespace,
		Partition: c.Partition,
	}
}

// startSourcesLocked starts the current upstream sources (built by New or
// Reload).
// Static upstreams serve until Consul has answered once; from then on
// Consul's list is the list, empty included. a.mu is held.
func (a *Agent) startSourcesLocked() {
	s := a.sources.Load()
	ctx, cancel := context.WithCancel(a.runCtx)
	s.cancel = cancel
	s.done = make(chan struct{})
	if s.consul == nil || len(s.static) > 0 {
		a.applyUpstreams("static", s.static)
	}
	if s.consul == nil {
		close(s.done)
		return
	}
	updates := make(chan discovery.Update)
	a.wg.Go(func() { s.consul.Run(ctx, updates) })
	a.wg.Go(func() {
		defer close(s.done)
		for {
			select {
			case u := <-updates:
				a.applyUpstreams(u.Source, u.Upstreams)
			case <-ctx.Done():
				return
			}
		}
	})
}

func (a *Agent) stopSourcesLocked() {
	if s := a.sources.Load(); s != nil && s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

func (a *Agent) applyUpstreams(source string, list []discovery.Upstream) {
	if a.proxy.SetUpstreams(list) {
		addrs := make([]string, 0, len(list))
		for _, u := range list {
			addrs = append(addrs, u.Key())
		}
		slices.Sort(addrs)
		if len(list) == 0 {
			a.log.Warn("upstream set is empty; answering 503 until a node is back", "source", source)
			return
		}
		a.log.Info("upstream set updated", "source", source, "upstreams", fmt.Sprint(addrs))
	}
}
