package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// Defaults of RegistrationOptions.
const (
	// DefaultRegistrationName is the Consul service name flowgate registers.
	DefaultRegistrationName = "flowgate"
	// DefaultCheckInterval is how often Consul calls the readiness URL.
	DefaultCheckInterval = 10 * time.Second
	// DefaultCheckTimeout bounds one readiness call.
	DefaultCheckTimeout = 5 * time.Second
	// DefaultDeregisterCriticalAfter is how long the check may stay critical
	// before Consul removes the registration.
	DefaultDeregisterCriticalAfter = time.Minute
	// DefaultResyncInterval is how often Run makes sure the registration
	// still exists.
	DefaultResyncInterval = 30 * time.Second
)

// RegistrationOptions configures NewRegistration. The embedded
// ConsulClientOptions say how to reach the local Consul agent.
type RegistrationOptions struct {
	ConsulClientOptions

	// Name is the Consul service name. Empty means DefaultRegistrationName.
	Name string
	// ID is the service ID, unique on the Consul agent. Empty means
	// "<Name>-<hostname>-<Port>".
	ID string
	// Tags are the service tags; nil registers none.
	Tags []string
	// Meta is the service meta data; nil registers none.
	Meta map[string]string
	// Address is where clients reach the HTTPS listener. Empty lets Consul
	// use the agent's node address. It shadows ConsulClientOptions.Address
	// (the Consul agent's), which is set through the embedded struct.
	Address string
	// Port is the port of the HTTPS listener; required.
	Port int
	// CheckURL is the admin readiness URL (http(s)://host:port/readyz) that
	// the Consul agent calls; required, so that Consul never routes to a
	// flowgate that is not ready.
	CheckURL string
	// CheckInterval is how often Consul calls CheckURL. Zero means
	// DefaultCheckInterval.
	CheckInterval time.Duration
	// CheckTimeout bounds one call of CheckURL. Zero means
	// DefaultCheckTimeout.
	CheckTimeout time.Duration
	// CheckTLSSkipVerify makes Consul skip verifying the certificate of an
	// https CheckURL. False (the default) verifies it.
	CheckTLSSkipVerify bool
	// DeregisterCriticalAfter is how long the check may stay critical before
	// Consul removes the service. Zero means DefaultDeregisterCriticalAfter;
	// negative never removes it.
	DeregisterCriticalAfter time.Duration
	// ResyncInterval is how often Run checks that the service is still
	// registered and registers it again if not (after a Consul agent restart
	// that lost its state). Zero means DefaultResyncInterval.
	ResyncInterval time.Duration
	// Logger receives registrations and errors. Nil discards.
	Logger *slog.Logger
}

// Registration registers flowgate itself as a Consul service, with an HTTP
// check on the admin readiness URL, on the local Consul agent.
//
// Register and Deregister act once. Run keeps the registration in place: it
// registers at once and then, every ResyncInterval, registers again if the
// agent no longer knows the service. Deregister also stops Run from
// registering again, so a shutdown can call Deregister first (to stop
// traffic) and cancel Run later.
type Registration struct {
	opts   RegistrationOptions
	client *consulClient
	reg    *api.AgentServiceRegistration
	log    *slog.Logger

	mu           sync.Mutex // serialises sync and Deregister, so Run never registers after Deregister
	deregistered atomic.Bool
}

// NewRegistration validates opts and builds the Consul client; it does not
// contact Consul.
func NewRegistration(opts RegistrationOptions) (*Registration, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	client, err := newConsulClient(opts.ConsulClientOptions)
	if err != nil {
		return nil, err
	}
	check := &api.AgentServiceCheck{
		CheckID:       "service:" + opts.ID,
		Name:          opts.Name + " readiness",
		HTTP:          opts.CheckURL,
		Method:        http.MethodGet,
		Interval:      opts.CheckInterval.String(),
		Timeout:       opts.CheckTimeout.String(),
		TLSSkipVerify: opts.CheckTLSSkipVerify,
	}
	if opts.DeregisterCriticalAfter > 0 {
		check.DeregisterCriticalServiceAfter = opts.DeregisterCriticalAfter.String()
	}
	return &Registration{
		opts:   opts,
		client: client,
		reg: &api.AgentServiceRegistration{
			ID:      opts.ID,
			Name:    opts.Name,
			Tags:    slices.Clone(opts.Tags),
			Meta:    maps.Clone(opts.Meta),
			Address: opts.Address,
			Port:    opts.Port,
			Check:   check,
		},
		log: opts.Logger.With("registration", opts.ID),
	}, nil
}

func (o RegistrationOptions) validate() error {
	if o.Name != "" {
		if err := validServiceName(o.Name); err != nil {
			return err
		}
	}
	if o.ID != "" {
		if err := validServiceName(o.ID); err != nil {
			return fmt.Errorf("service ID: %w", err)
		}
	}
	if o.Port < 1 || o.Port > 65535 {
		return fmt.Errorf("%w: registration port %d is outside 1..65535; set the port of the HTTPS listener", ErrConsulOptions, o.Port)
	}
	if o.Address != "" {
		if _, ok := validHost(o.Address); !ok {
			return fmt.Errorf("%w: registration address %q is not an IP address or host name", ErrConsulOptions, o.Address)
		}
	}
	u, err := url.Parse(o.CheckURL)
	switch {
	case o.CheckURL == "":
		return fmt.Errorf("%w: no check URL; set the admin readiness URL (http://ADMIN/readyz) for Consul to call", ErrConsulOptions)
	case err != nil:
		return fmt.Errorf("%w: check URL %q: %v", ErrConsulOptions, o.CheckURL, err)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("%w: check URL %q must be http(s)://host:port/path", ErrConsulOptions, o.CheckURL)
	}
	if o.CheckInterval < 0 || o.CheckTimeout < 0 || o.ResyncInterval < 0 {
		return fmt.Errorf("%w: negative check interval, check timeout or resync interval", ErrConsulOptions)
	}
	return o.ConsulClientOptions.validate()
}

func (o RegistrationOptions) withDefaults() RegistrationOptions {
	if o.Name == "" {
		o.Name = DefaultRegistrationName
	}
	if o.ID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "localhost"
		}
		o.ID = o.Name + "-" + host + "-" + strconv.Itoa(o.Port)
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.CheckTimeout == 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.DeregisterCriticalAfter == 0 {
		o.DeregisterCriticalAfter = DefaultDeregisterCriticalAfter
	}
	if o.ResyncInterval == 0 {
		o.ResyncInterval = DefaultResyncInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// ID returns the service ID used in Consul.
func (r *Registration) ID() string { return r.opts.ID }

// Register registers the service and its check with the Consul agent,
// replacing an earlier registration with the same ID. It undoes a former
// Deregister for Run.
func (r *Registration) Register(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deregistered.Store(false)
	return r.register(ctx)
}

func (r *Registration) register(ctx context.Context) error {
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true, Token: r.token()}.WithContext(ctx)
	if err := r.client.api.Agent().ServiceRegisterOpts(r.reg, opts); err != nil {
		return fmt.Errorf("registering service %q with consul %s: %w", r.opts.ID, r.client.address, err)
	}
	return nil
}

// Deregister removes the service from the Consul agent and stops Run from
// registering it again. A service that is already gone is not an error.
func (r *Registration) Deregister(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deregistered.Store(true)
	q := (&api.QueryOptions{Token: r.token()}).WithContext(ctx)
	err := r.client.api.Agent().ServiceDeregisterOpts(r.opts.ID, q)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deregistering service %q from consul %s: %w", r.opts.ID, r.client.address, err)
	}
	r.log.Info("deregistered from consul")
	return nil
}

// Registered reports whether the Consul agent knows the service.
func (r *Registration) Registered(ctx context.Context) (bool, error) {
	q := (&api.QueryOptions{Token: r.token()}).WithContext(ctx)
	_, _, err := r.client.api.Agent().Service(r.opts.ID, q)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("looking up service %q in consul %s: %w", r.opts.ID, r.client.address, err)
	}
}

// Run registers the service and keeps it registered until ctx is cancelled:
// every ResyncInterval it checks that the agent still knows the service and
// registers it again if not. Errors are logged and retried with backoff
// (capped at ResyncInterval). Run does not deregister on return; call
// Deregister.
func (r *Registration) Run(ctx context.Context) {
	defer r.client.closeIdle()
	failures := 0
	registered := false
	for {
		wait := r.opts.ResyncInterval
		if err := r.sync(ctx, registered); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait = backoff(failures, r.opts.ResyncInterval, jitter())
			if failures == 1 || failures%10 == 0 {
				r.log.Warn("consul registration failed; retrying", "err", err, "attempt", failures, "retry_in", wait.Round(time.Millisecond))
			}
		} else {
			failures = 0
			registered = true
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// sync registers the service unless it exists (or Deregister was called).
// The first sync of Run registers unconditionally, so that a changed
// definition replaces an old one with the same ID.
func (r *Registration) sync(ctx context.Context, registeredBefore bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deregistered.Load() {
		return nil
	}
	if registeredBefore {
		ok, err := r.Registered(ctx)
		if err != nil || ok {
			return err
		}
		r.log.Warn("consul agent lost the flowgate registration (agent restarted?); registering again")
	}
	if err := r.register(ctx); err != nil {
		return err
	}
	r.log.Info("registered with consul", "service", r.opts.Name, "port", r.opts.Port, "check", r.opts.CheckURL)
	return nil
}

func (r *Registration) token() string {
	tok, err := r.client.currentToken()
	if err != nil {
		r.log.Warn("cannot re-read the consul token file; using the last token", "err", err)
	}
	return tok
}

// isNotFound reports whether err is Consul's 404 answer.
func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}
