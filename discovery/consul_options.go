package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of ConsulOptions.
const (
	// DefaultConsulWaitTime is how long one blocking query waits for a change.
	// Consul adds up to WaitTime/16 of jitter and caps the wait at 10 minutes.
	DefaultConsulWaitTime = 30 * time.Second
	// DefaultConsulMinInterval is the least time between the starts of two
	// queries for one service. It only delays a query when the previous one
	// returned sooner than that, so it bounds the query rate during bursts of
	// changes without delaying the first change after a quiet period.
	DefaultConsulMinInterval = 50 * time.Millisecond
	// DefaultConsulMaxBackoff caps the wait between retries after errors.
	DefaultConsulMaxBackoff = 30 * time.Second
)

// ConsulTLSOptions configures TLS to the Consul HTTP API. Empty fields keep
// the value from the CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY,
// CONSUL_TLS_SERVER_NAME and CONSUL_HTTP_SSL_VERIFY environment variables.
type ConsulTLSOptions struct {
	// CAFile is a PEM bundle of the CAs that sign Consul's certificate; empty
	// uses the system roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key, for a Consul
	// that verifies incoming HTTPS connections; empty sends none.
	CertFile string
	// KeyFile is the private key of CertFile.
	KeyFile string
	// ServerName is the name expected in Consul's certificate; empty uses
	// the host of Address.
	ServerName string
	// InsecureSkipVerify disables verification of Consul's certificate. Only
	// for tests.
	InsecureSkipVerify bool
}

// ConsulClientOptions says how to reach the Consul HTTP API. It is shared by
// ConsulOptions and RegistrationOptions. The client starts from Consul's own
// defaults, so the CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE,
// CONSUL_HTTP_SSL, CONSUL_CACERT, CONSUL_NAMESPACE, CONSUL_PARTITION...
// environment variables apply; every non-empty field overrides them.
type ConsulClientOptions struct {
	// Address is the Consul agent's HTTP API as "host:port",
	// "https://host:port" or "unix:///path"; empty uses CONSUL_HTTP_ADDR or
	// 127.0.0.1:8500.
	Address string
	// Datacenter to query; empty uses the agent's own datacenter.
	Datacenter string
	// Token is the ACL token; empty uses CONSUL_HTTP_TOKEN or no token.
	Token string
	// TokenFile is a file holding the ACL token; it takes precedence over
	// Token. The file is read at construction and read again whenever its
	// modification time changes, so a token rotated by a sidecar is picked up
	// without a restart.
	TokenFile string
	// TLS configures HTTPS to Consul; it applies when Address starts with
	// https:// or CONSUL_HTTP_SSL=true.
	TLS ConsulTLSOptions
	// Namespace (Consul Enterprise); empty uses the token's namespace.
	Namespace string
	// Partition (Consul Enterprise); empty uses the token's partition.
	Partition string

	// transport replaces the HTTP transport; tests use it to run the watch
	// against an in-memory Consul inside a synctest bubble.
	transport http.RoundTripper
}

// ConsulOptions configures NewConsul. The embedded ConsulClientOptions say
// how to reach Consul.
type ConsulOptions struct {
	ConsulClientOptions

	// Services are the Consul service names whose instances become
	// upstreams; at least one is required. Their instances are merged into
	// one list.
	Services []string
	// Tags restrict the instances to those carrying every one of these tags;
	// empty means no restriction.
	Tags []string
	// AllowStale lets any Consul server answer, not only the leader, so that
	// a leader election does not stall updates. Nil means true.
	AllowStale *bool
	// PassingOnly keeps only instances whose every check passes. When false,
	// instances with a warning check are used too (at their warning
	// weight). Nil means true: operators drain a node by setting a check to
	// warning. Instances with a critical check, in maintenance, or on a node
	// whose serfHealth check fails are never used.
	PassingOnly *bool
	// FailOpen keeps a service's last non-empty list when Consul reports that
	// none of its instances is healthy, instead of sending an empty list
	// (which makes the proxy answer 503). False (the default) trusts Consul.
	FailOpen bool
	// MinInterval is the least time between the starts of two queries for
	// one service, plus up to a quarter of it as jitter. Zero means
	// DefaultConsulMinInterval.
	MinInterval time.Duration
	// WaitTime is how long a blocking query waits for a change before Consul
	// answers with the unchanged list. Zero means DefaultConsulWaitTime.
	WaitTime time.Duration
	// MaxBackoff caps the wait between retries after errors. Zero means
	// DefaultConsulMaxBackoff.
	MaxBackoff time.Duration
	// Logger receives errors, recoveries and skipped instances. Nil discards.
	Logger *slog.Logger
	// Registerer receives the discovery metrics (see MetricDiscoveryUpdates
	// and the other Metric* constants). Nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock for the timestamps reported by Status and the
	// metrics. Nil means time.Now.
	Now func() time.Time
}

// ErrConsulOptions is wrapped by every validation error of NewConsul and
// NewRegistration.
var ErrConsulOptions = errors.New("invalid consul options")

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func (o ConsulOptions) withDefaults() ConsulOptions {
	if o.MinInterval == 0 {
		o.MinInterval = DefaultConsulMinInterval
	}
	if o.WaitTime == 0 {
		o.WaitTime = DefaultConsulWaitTime
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultConsulMaxBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

func (o ConsulOptions) validate() error {
	if len(o.Services) == 0 {
		return fmt.Errorf("%w: no service names; set at least one Consul service to discover", ErrConsulOptions)
	}
	seen := make(map[string]bool, len(o.Services))
	for _, s := range o.Services {
		if err := validServiceName(s); err != nil {
			return err
		}
		if seen[s] {
			return fmt.Errorf("%w: service %q is listed twice", ErrConsulOptions, s)
		}
		seen[s] = true
	}
	for _, t := range o.Tags {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("%w: empty tag; remove it or name the tag instances must carry", ErrConsulOptions)
		}
	}
	switch {
	case o.MinInterval < 0:
		return fmt.Errorf("%w: min interval %v is negative", ErrConsulOptions, o.MinInterval)
	case o.MinInterval > time.Minute:
		return fmt.Errorf("%w: min interval %v is over a minute; updates would lag that long", ErrConsulOptions, o.MinInterval)
	case o.WaitTime < time.Second || o.WaitTime > 10*time.Minute:
		return fmt.Errorf("%w: wait time %v is outside 1s..10m (Consul's limit)", ErrConsulOptions, o.WaitTime)
	case o.MaxBackoff < 10*time.Millisecond:
		return fmt.Errorf("%w: max backoff %v is below 10ms; retries would hammer Consul", ErrConsulOptions, o.MaxBackoff)
	}
	return o.ConsulClientOptions.validate()
}

// validServiceName refuses names that cannot be a path segment of the
// health endpoint.
func validServiceName(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w: empty service name", ErrConsulOptions)
	}
	if s != strings.TrimSpace(s) || strings.ContainsAny(s, "/?#%\\ \t\r\n") {
		return fmt.Errorf("%w: service name %q contains a space, slash or URL character; use the name as registered in Consul", ErrConsulOptions, s)
	}
	return nil
}

func (c ConsulClientOptions) validate() error {
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: consul TLS client certificate %q and key %q must be set together", ErrConsulOptions, c.TLS.CertFile, c.TLS.KeyFile)
	}
	if strings.ContainsAny(c.Address, " \t\r\n") {
		return fmt.Errorf("%w: consul address %q contains white space", ErrConsulOptions, c.Address)
	}
	return nil
}

// consulClient is an API client plus what flowgate needs around it: the
// token file to re-read and the HTTP client whose idle connections to close.
type consulClient struct {
	api       *api.Client
	http      *http.Client
	address   string
	tokenFile string

	mu        sync.Mutex // guards the token cache below
	tokenMod  time.Time
	tokenSize int64
	token     string
}

// newConsulClient builds the API client from Consul's defaults (environment
// variables) overridden by the non-empty fields of o. It reads the token file
// and the TLS files now, so that a typo fails at start.
func newConsulClient(o ConsulClientOptions) (*consulClient, error) {
	cfg := api.DefaultConfig()
	if o.Address != "" {
		cfg.Address = o.Address
	}
	if o.Datacenter != "" {
		cfg.Datacenter = o.Datacenter
	}
	if o.Token != "" {
		cfg.Token = o.Token
	}
	if o.TokenFile != "" {
		cfg.TokenFile = o.TokenFile
	}
	if o.Namespace != "" {
		cfg.Namespace = o.Namespace
	}
	if o.Partition != "" {
		cfg.Partition = o.Partition
	}
	if o.TLS.CAFile != "" {
		cfg.TLSConfig.CAFile = o.TLS.CAFile
	}
	if o.TLS.CertFile != "" {
		cfg.TLSConfig.CertFile = o.TLS.CertFile
		cfg.TLSConfig.KeyFile = o.TLS.KeyFile
	}
	if o.TLS.ServerName != "" {
		cfg.TLSConfig.Address = o.TLS.ServerName
	}
	if o.TLS.InsecureSkipVerify {
		cfg.TLSConfig.InsecureSkipVerify = true
	}
	if o.transport != nil {
		cfg.HttpClient = &http.Client{Transport: o.transport}
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: consul client for %q: %v; check the address, token file and TLS files", ErrConsulOptions, cfg.Address, err)
	}
	cc := &consulClient{api: client, http: cfg.HttpClient, address: cfg.Address, tokenFile: cfg.TokenFile}
	if cc.tokenFile != "" {
		if _, err := cc.currentToken(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConsulOptions, err)
		}
	}
	return cc, nil
}

// currentToken returns the token from the token file, re-reading the file
// when its size or modification time changed. Without a token file it returns
// "" (the client's configured token applies). A file that cannot be read
// keeps the last token and returns the error.
func (c *consulClient) currentToken() (string, error) {
	if c.tokenFile == "" {
		return "", nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := os.Stat(c.tokenFile)
	if err != nil {
		return c.token, fmt.Errorf("consul token file: %w", err)
	}
	if fi.ModTime().Equal(c.tokenMod) && fi.Size() == c.tokenSize && c.token != "" {
		return c.token, nil
	}
	data, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return c.token, fmt.Errorf("consul token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return c.token, fmt.Errorf("consul token file %q is empty; write the ACL token into it", c.tokenFile)
	}
	c.token, c.tokenMod, c.tokenSize = tok, fi.ModTime(), fi.Size()
	return tok, nil
}

// closeIdle closes the idle keep-alive connections to Consul.
func (c *consulClient) closeIdle() {
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
}
