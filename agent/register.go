package agent

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

// newRegistration builds flowgate's own Consul registration from the bound
// listener addresses: the HTTPS port as the service port, and an HTTP check
// on the admin /readyz so that Consul never routes to a flowgate that is not
// ready.
func (a *Agent) newRegistration(cfg *Config, addrs Addrs) (*discovery.Registration, error) {
	rc := cfg.Consul.Register
	host, portStr, err := net.SplitHostPort(addrs.HTTPS)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portStr)
	if p := cfg.Listen.PublicHTTPSPort; p > 0 {
		port = p
	}
	address := rc.Address
	if address == "" && !isWildcard(host) {
		address = host
	}
	check := rc.CheckAddress
	if check == "" {
		check = addrs.Admin
	}
	ch, cp, err := net.SplitHostPort(check)
	if err != nil {
		return nil, &FieldError{Key: "consul.register.check_address", Err: err}
	}
	if isWildcard(ch) {
		ch = "127.0.0.1"
	}
	c := cfg.Consul
	return discovery.NewRegistration(discovery.RegistrationOptions{
		ConsulClientOptions: consulClientOptions(&c),
		Name:                rc.Name,
		Tags:                rc.Tags,
		Address:             address,
		Port:                port,
		CheckURL:            "http://" + net.JoinHostPort(ch, cp) + "/readyz",
		Logger:              a.log.With("component", "consul-register"),
	})
}

func isWildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// startRegistration registers flowgate in Consul when configured and keeps it
// registered; the returned function deregisters it (at shutdown, before the
// listeners stop, so that Consul stops routing first).
func (a *Agent) startRegistration(ctx context.Context, cfg *Config) func() {
	if !cfg.Consul.Register.Enabled {
		return func() {}
	}
	reg, err := a.newRegistration(cfg, a.Addrs())
	if err != nil {
		a.log.Error("consul self-registration disabled", "err", fmt.Errorf("consul.register: %w", err))
		return func() {}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		reg.Run(rctx)
	}()
	return func() {
		cancel()
		<-done
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		if err := reg.Deregister(dctx); err != nil {
			a.log.Warn("consul deregistration failed; Consul removes the service once its check stays critical", "err", err)
		}
	}
}
