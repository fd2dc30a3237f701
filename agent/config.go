package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flowgate/flowgate/agent/proxy"
	"github.com/flowgate/flowgate/certs"
	"github.com/flowgate/flowgate/discovery"
)

// Config is flowgate's whole configuration. It is read from YAML (strict:
// an unknown key is an error), overlaid by FLOWGATE_* environment variables
// and then by command-line flags. Default returns the embedded defaults.
type Config struct {
	// Listen holds the listener addresses.
	Listen ListenConfig `yaml:"listen"`
	// ServerNames are the host names this proxy answers for. The HTTP
	// redirect only ever points at one of them. Empty: any syntactically
	// valid host.
	ServerNames []string `yaml:"server_names"`
	// UnknownHost is what the redirect listener does with a Host that is not
	// a server name: "redirect" (to the first server name) or "reject" (421).
	UnknownHost string `yaml:"unknown_host"`
	// StateDir is where flowgate keeps what it generates (the built-in CA).
	StateDir string `yaml:"state_dir"`
	// TLS configures the HTTPS listener and its certificate files.
	TLS TLSConfig `yaml:"tls"`
	// Issuer configures the built-in certificate issuer, used when
	// TLS.Certificates is empty.
	Issuer IssuerConfig `yaml:"issuer"`
	// Upstreams configures the Flowable nodes and how they are balanced.
	Upstreams UpstreamsConfig `yaml:"upstreams"`
	// Consul configures discovery of upstreams in Consul.
	Consul ConsulConfig `yaml:"consul"`
	// HTTP configures request handling: timeouts, limits, policies.
	HTTP HTTPConfig `yaml:"http"`
	// Admin configures the admin listener.
	Admin AdminConfig `yaml:"admin"`
	// Log configures logging.
	Log LogConfig `yaml:"log"`
}

// ListenConfig holds listener addresses.
type ListenConfig struct {
	// HTTPS is the TLS listener address.
	HTTPS string `yaml:"https"`
	// HTTP is the redirect listener; empty disables it.
	HTTP string `yaml:"http"`
	// Admin is the admin listener (metrics, health, status); empty disables.
	Admin string `yaml:"admin"`
	// PublicHTTPSPort is the HTTPS port clients see, used in redirects and
	// X-Forwarded-Port when a NAT or container maps ports; 0 means the port
	// of Listen.HTTPS.
	PublicHTTPSPort int `yaml:"public_https_port"`
	// ProxyProtocolFrom are the TCP load balancers (CIDRs or addresses)
	// whose connections to the HTTPS and HTTP listeners start with a PROXY
	// protocol header naming the client.
	ProxyProtocolFrom []string `yaml:"proxy_protocol_from"`
}

// TLSConfig configures the HTTPS listener.
type TLSConfig struct {
	// MinVersion is "1.2" (Mozilla intermediate) or "1.3" (modern).
	MinVersion string `yaml:"min_version"`
	// Certificates are PEM certificate/key file pairs, watched and reloaded.
	// The first is the default for clients without SNI. Empty: the built-in
	// issuer provides the certificate.
	Certificates []CertificateFiles `yaml:"certificates"`
	// ClientCAFile, when set, asks clients for a certificate signed by one of
	// these CAs (mutual TLS). Reloaded like the certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "request" (verify when given) or "require"; only with
	// ClientCAFile. Default "require".
	ClientAuth string `yaml:"client_auth"`
	// ReloadInterval is the periodic re-check of certificate files, the
	// safety net for filesystems that lose change events.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// ExpiryWarning: a certificate expiring within this window is served
	// with a warning.
	ExpiryWarning time.Duration `yaml:"expiry_warning"`
	// SessionTickets enables TLS session resumption by ticket.
	SessionTickets bool `yaml:"session_tickets"`
	// HSTSMaxAge, when above zero, sends Strict-Transport-Security with this
	// max-age. Off by default: a self-signed setup must not pin browsers.
	HSTSMaxAge time.Duration `yaml:"hsts_max_age"`
}

// CertificateFiles is one certificate and its key, PEM files. The cert file
// may carry the chain, leaf first.
type CertificateFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// IssuerConfig configures the built-in issuer.
type IssuerConfig struct {
	// Mode is "ca" (a local CA signs short-lived leaves; trust the CA once)
	// or "self_signed" (a bare self-signed leaf; re-trust after rotation).
	Mode string `yaml:"mode"`
	// KeyType is p256, p384, rsa2048 or rsa3072.
	KeyType string `yaml:"key_type"`
	// CACertFile and CAKeyFile name a CA of your own to sign leaves with,
	// so that several flowgate instances share one trust root.
	CACertFile string `yaml:"ca_cert_file"`
	CAKeyFile  string `yaml:"ca_key_file"`
	// LeafLifetime is the validity of each issued leaf.
	LeafLifetime time.Duration `yaml:"leaf_lifetime"`
	// RenewBefore renews a leaf this long before it expires; 0 means when a
	// third of its lifetime remains.
	RenewBefore time.Duration `yaml:"renew_before"`
	// Hosts are extra DNS names and IP addresses for the leaf, beyond the
	// server names, the hostname, localhost, 127.0.0.1 and ::1.
	Hosts []string `yaml:"hosts"`
}

// UpstreamsConfig configures the upstream nodes and balancing.
type UpstreamsConfig struct {
	// Static lists nodes as "HOST:PORT", "http://HOST:PORT" or
	// "https://HOST:PORT", optionally followed by " weight=N". With Consul
	// enabled they are the fallback used until Consul has answered once.
	// Empty without Consul: 127.0.0.1:8090.
	Static []string `yaml:"static"`
	// Balance is round_robin, least_conn or ip_hash.
	Balance string `yaml:"balance"`
	// StickyCookie names a cookie that pins a browser to one node; empty
	// disables stickiness.
	StickyCookie string `yaml:"sticky_cookie"`
	// MaxFails failures within FailTimeout eject a node for FailTimeout
	// (NGINX max_fails/fail_timeout); 0 disables passive health.
	MaxFails    int           `yaml:"max_fails"`
	FailTimeout time.Duration `yaml:"fail_timeout"`
	// RetryIdempotent retries GET/HEAD/OPTIONS/TRACE without a body on
	// another node after a failure. Connect failures are always retried.
	RetryIdempotent bool `yaml:"retry_idempotent"`
	// MaxAttempts bounds the nodes tried per request.
	MaxAttempts int `yaml:"max_attempts"`
	// DrainTimeout: WebSockets to a node that left the set are closed after
	// this; 0 leaves them open until either side ends them.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// SlowStart ramps up the requests a node takes over this long after it
	// joins a running set or comes back from failing; 0 means none.
	SlowStart time.Duration `yaml:"slow_start"`
	// DialTimeout, ResponseHeaderTimeout and IdleConnTimeout bound upstream
	// connections; KeepAlive sizes the idle pool per node.
	DialTimeout           time.Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// ReadTimeout bounds each wait for data from a node once a response
	// has started (NGINX proxy_read_timeout); WebSockets are exempt.
	ReadTimeout     time.Duration `yaml:"read_timeout"`
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`
	KeepAlive       int           `yaml:"keepalive"`
	// HealthCheck configures active health checks of the nodes.
	HealthCheck HealthCheckConfig `yaml:"health_check"`
	// TLS configures HTTPS to upstreams.
	TLS UpstreamTLSConfig `yaml:"tls"`
}

// RestrictedPath lets only clients from AllowFrom (CIDRs or addresses)
// reach Path and what lies under it; others get 403.
type RestrictedPath struct {
	Path      string   `yaml:"path"`
	AllowFrom []string `yaml:"allow_from"`
}

// pathPolicy builds the proxy's path policy from the blocked, allowed and
// restricted paths.
func (h *HTTPConfig) pathPolicy() (*proxy.PathPolicy, error) {
	p, err := proxy.NewPathPolicy(h.BlockedPaths, h.AllowedPaths)
	if err != nil {
		return nil, err
	}
	rs := make([]proxy.PathRestriction, 0, len(h.RestrictedPaths))
	for _, r := range h.RestrictedPaths {
		rs = append(rs, proxy.PathRestriction{Prefix: r.Path, AllowFrom: r.AllowFrom})
	}
	if err := p.Restrict(rs); err != nil {
		return nil, err
	}
	return p, nil
}

// HealthCheckConfig configures active health checks: every Interval each
// node is sent GET Path; Fails failures in a row take it out, Passes
// passes in a row bring it back. A 2xx or 3xx answer within Timeout
// passes.
type HealthCheckConfig struct {
	// Path is the request path, such as /actuator/health; empty disables
	// active health checks.
	Path     string        `yaml:"path"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	Fails    int           `yaml:"fails"`
	Passes   int           `yaml:"passes"`
}

// UpstreamTLSConfig configures TLS to upstreams.
type UpstreamTLSConfig struct {
	// CAFile verifies upstream certificates; empty uses the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name verified in upstream certificates.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are a client certificate for upstreams that
	// require one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify disables verification. Only for tests.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ConsulConfig configures Consul discovery and self-registration.
type ConsulConfig struct {
	// Services are the Consul service names of the Flowable nodes. Empty
	// disables Consul discovery.
	Services []string `yaml:"services"`
	// Tags must all be present on an instance.
	Tags []string `yaml:"tags"`
	// Address is the Consul HTTP address; empty uses CONSUL_HTTP_ADDR or
	// 127.0.0.1:8500.
	Address    string `yaml:"address"`
	Datacenter string `yaml:"datacenter"`
	// Token and TokenFile are the ACL token; empty uses CONSUL_HTTP_TOKEN.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// TLS to the Consul agent; empty fields use CONSUL_CACERT and friends.
	TLS ConsulTLSConfig `yaml:"tls"`
	// Namespace and Partition are passed through for Consul Enterprise.
	Namespace string `yaml:"namespace"`
	Partition string `yaml:"partition"`
	// AllowStale lets any Consul server answer (no stall during elections).
	AllowStale bool `yaml:"allow_stale"`
	// PassingOnly keeps only passing instances; "warning" drains a node.
	PassingOnly bool `yaml:"passing_only"`
	// FailOpen keeps the last non-empty set when Consul says no instance
	// passes, instead of answering 503.
	FailOpen bool `yaml:"fail_open"`
	// Register registers flowgate itself in Consul.
	Register RegisterConfig `yaml:"register"`
}

// ConsulTLSConfig configures TLS to Consul.
type ConsulTLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// RegisterConfig configures self-registration in Consul.
type RegisterConfig struct {
	Enabled bool     `yaml:"enabled"`
	Name    string   `yaml:"name"`
	Tags    []string `yaml:"tags"`
	// Address is the address registered for the HTTPS listener; empty uses
	// the listener's host, or the agent's address when that is a wildcard.
	Address string `yaml:"address"`
	// CheckAddress is the admin address Consul's HTTP check calls; empty uses
	// listen.admin.
	CheckAddress string `yaml:"check_address"`
}

// HTTPConfig configures request handling.
type HTTPConfig struct {
	// TrustedProxies are CIDRs whose X-Forwarded-For chain is kept.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// BlockedPaths are refused with 403 (prefix match on a normalised path);
	// AllowedPaths are exceptions. Default: /actuator except /actuator/health.
	BlockedPaths []string `yaml:"blocked_paths"`
	AllowedPaths []string `yaml:"allowed_paths"`
	// RestrictedPaths may be reached only from some networks.
	RestrictedPaths []RestrictedPath `yaml:"restricted_paths"`
	// ReadHeaderTimeout cuts clients that send headers too slowly (slowloris).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive client connections.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// FastPath serves HTTP/1.1 requests without a body or with a small
	// Content-Length one with flowgate's own request loop instead of
	// net/http's server (agent/proxy/fast.go); everything else goes to
	// net/http either way.
	FastPath bool `yaml:"fast_path"`
	// MaxBodyBytes bounds request bodies; 0 means no limit.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ClientBodyTimeout bounds each wait for more of a request body (408
	// beyond); 0 means no limit.
	ClientBodyTimeout time.Duration `yaml:"client_body_timeout"`
	// SendTimeout bounds each wait to write a response, or a node's
	// WebSocket messages, to a client that does not read them; 0 means no
	// limit.
	SendTimeout time.Duration `yaml:"send_timeout"`
	// RequestIDHeader names the header that carries each request's ID to
	// the node, back to the client and into the access log; empty: none.
	RequestIDHeader string `yaml:"request_id_header"`
	// ResponseHeaders are set on every response (a value) or removed from
	// the nodes' responses (an empty value).
	ResponseHeaders map[string]string `yaml:"response_headers"`
	// ErrorPages are HTML files sent instead of the text of flowgate's own
	// 502, 503 and 504 answers to clients that take HTML.
	ErrorPages map[int]string `yaml:"error_pages"`
	// Compression gzips the nodes' responses for clients that accept it;
	// off by default.
	Compression CompressionConfig `yaml:"compression"`
	// MaxConnections bounds concurrent client connections per listener;
	// 0 means no limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxWebSockets bounds concurrent WebSockets; 0 means no limit.
	MaxWebSockets int `yaml:"max_websockets"`
	// RateLimit limits requests per client address; off by default.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	// ShutdownTimeout is how long in-flight requests may take to finish
	// after SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// RateLimitConfig configures the per-client request rate limit. Clients
// are told apart by address (IPv6 by /64) after the trusted-proxy rules;
// over the limit they get 429 with Retry-After.
type RateLimitConfig struct {
	// RequestsPerSecond is each client's sustained rate; 0 disables.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is how many requests a client may send at once; 0 means twice
	// the rate (at least 1).
	Burst int `yaml:"burst"`
	// MaxClients bounds the clients remembered at once (least recently
	// seen forgotten first); 0 means 100000.
	MaxClients int `yaml:"max_clients"`
}

// CompressionConfig configures gzip compression of the nodes' responses,
// as NGINX's gzip module: only the media types listed, not responses the
// node encoded itself, and not those shorter than MinLength.
type CompressionConfig struct {
	// Enabled turns compression on.
	Enabled bool `yaml:"enabled"`
	// Level is gzip's level, 1 (fastest) to 9 (smallest).
	Level int `yaml:"level"`
	// MinLength is the shortest response compressed, in bytes; a response
	// of unknown length always is.
	MinLength int64 `yaml:"min_length"`
	// Types are the media types compressed: type/subtype or type/*.
	Types []string `yaml:"types"`
	// MaxConcurrent bounds the responses compressed at once (each holds a
	// compressor of about 1 MiB); beyond it they go out uncompressed.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// DefaultCompressionTypes are what Flowable's web apps and REST API send
// that compresses well: pages, scripts, styles, JSON, BPMN and DMN XML,
// SVG diagrams.
var DefaultCompressionTypes = []string{
	"text/html", "text/css", "text/plain", "text/javascript", "text/xml",
	"application/javascript", "application/json", "application/xml",
	"application/hal+json", "application/problem+json", "image/svg+xml",
}

// compression builds the proxy's compression; nil when it is off.
func (h *HTTPConfig) compression() (*proxy.Compression, error) {
	cc := h.Compression
	if !cc.Enabled {
		return nil, nil
	}
	return proxy.NewCompression(cc.Level, cc.MinLength, cc.Types, cc.MaxConcurrent)
}

// AdminConfig configures the admin listener's extras.
type AdminConfig struct {
	// Pprof serves /debug/pprof/ on the admin listener.
	Pprof bool `yaml:"pprof"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Format is "text" or "json".
	Format string `yaml:"format"`
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// AccessLog writes one line per request.
	AccessLog bool `yaml:"access_log"`
}

// Default returns the embedded defaults: what `flowgate run` serves with no
// configuration at all.
func Default() Config {
	return Config{
		Listen:      ListenConfig{HTTPS: ":8443", HTTP: ":8080", Admin: "127.0.0.1:9100"},
		UnknownHost: "redirect",
		TLS: TLSConfig{
			MinVersion:     "1.2",
			ClientAuth:     "require",
			ReloadInterval: 30 * time.Second,
			ExpiryWarning:  7 * 24 * time.Hour,
			SessionTickets: true,
		},
		Issuer: IssuerConfig{
			Mode:         "ca",
			KeyType:      "p256",
			LeafLifetime: 30 * 24 * time.Hour,
		},
		Upstreams: UpstreamsConfig{
			Balance:               "round_robin",
			MaxFails:              3,
			FailTimeout:           10 * time.Second,
			RetryIdempotent:       true,
			MaxAttempts:           3,
			DrainTimeout:          time.Minute,
			DialTimeout:           5 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ReadTimeout:           60 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			KeepAlive:             256,
			HealthCheck: HealthCheckConfig{
				Interval: 5 * time.Second,
				Timeout:  2 * time.Second,
				Fails:    2,
				Passes:   2,
			},
		},
		Consul: ConsulConfig{AllowStale: true, PassingOnly: true},
		HTTP: HTTPConfig{
			BlockedPaths:      []string{"/actuator"},
			AllowedPaths:      []string{"/actuator/health"},
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			ClientBodyTimeout: 60 * time.Second,
			SendTimeout:       60 * time.Second,
			MaxHeaderBytes:    64 << 10,
			FastPath:          true,
			MaxConnections:    10000,
			MaxWebSockets:     10000,
			ShutdownTimeout:   30 * time.Second,
			Compression: CompressionConfig{
				Level:         5,
				MinLength:     1024,
				Types:         slices.Clone(DefaultCompressionTypes),
				MaxConcurrent: 64,
			},
		},
		Log: LogConfig{Format: "text", Level: "info"},
	}
}

// LoadFile reads a YAML configuration over the defaults. An unknown key, a
// wrong type or a second document is an error naming the line.
func LoadFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config %q: %w", path, err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %q: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML over the defaults, strictly.
func Parse(data []byte) (Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil // an empty file is the defaults
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = unknownField.ReplaceAllString(msg, `unknown key "$1" (check its spelling and indentation; deploy/flowgate.yaml shows every key)`)
		msg = goType.ReplaceAllString(msg, "")
		if strings.Contains(msg, "into time.Duration") {
			msg += " (durations are written like 500ms, 10s, 5m or 720h)"
		}
		return Config{}, fmt.Errorf("%s", msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("more than one YAML document; flowgate reads one")
	}
	return cfg, nil
}

// unknownField and goType turn the YAML decoder's Go-flavoured messages
// into ones that speak of configuration keys.
var (
	unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
	goType       = regexp.MustCompile(` in type agent\.\w+`)
)

// FieldError is a validation error that names the configuration key.
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Validate checks every setting and returns all problems found, each naming
// its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkAddr("listen.https", c.Listen.HTTPS, false))
	add(checkAddr("listen.http", c.Listen.HTTP, true))
	add(checkAddr("listen.admin", c.Listen.Admin, true))
	if p := c.Listen.PublicHTTPSPort; p < 0 || p > 65535 {
		add(fieldErr("listen.public_https_port", "%d is not a port (1-65535, or 0 for the listener's port)", p))
	}
	if _, err := proxy.ParseTrustedProxies(c.Listen.ProxyProtocolFrom); err != nil {
		add(&FieldError{Key: "listen.proxy_protocol_from", Err: fmt.Errorf("%v; use the load balancers' CIDRs like 10.0.0.0/8 or single addresses", err)})
	}
	for i, n := range c.ServerNames {
		if !validServerName(n) {
			add(fieldErr(fmt.Sprintf("server_names[%d]", i), "%q is not a host name (letters, digits, '-', '.', an optional leading '*.' or an IP address)", n))
		}
	}
	switch c.UnknownHost {
	case "redirect", "reject":
	default:
		add(fieldErr("unknown_host", "%q: use redirect or reject", c.UnknownHost))
	}
	switch c.TLS.MinVersion {
	case "1.2", "1.3":
	case "1.0", "1.1", "1", "1.0.0":
		add(fieldErr("tls.min_version", "TLS %s is deprecated by RFC 8996 and not offered; use 1.2 or 1.3", c.TLS.MinVersion))
	default:
		add(fieldErr("tls.min_version", "%q: use 1.2 or 1.3", c.TLS.MinVersion))
	}
	for i, cf := range c.TLS.Certificates {
		key := fmt.Sprintf("tls.certificates[%d]", i)
		if cf.CertFile == "" || cf.KeyFile == "" {
			add(fieldErr(key, "cert_file and key_file are both required"))
			continue
		}
		add(checkReadable(key+".cert_file", cf.CertFile))
		add(checkReadable(key+".key_file", cf.KeyFile))
	}
	if c.TLS.ClientCAFile != "" {
		add(checkReadable("tls.client_ca_file", c.TLS.ClientCAFile))
	}
	switch c.TLS.ClientAuth {
	case "request", "require":
	default:
		add(fieldErr("tls.client_auth", "%q: use request or require", c.TLS.ClientAuth))
	}
	add(positive("tls.reload_interval", c.TLS.ReloadInterval))
	if c.TLS.ExpiryWarning < 0 {
		add(fieldErr("tls.expiry_warning", "must not be negative"))
	}
	if c.TLS.HSTSMaxAge < 0 {
		add(fieldErr("tls.hsts_max_age", "must not be negative"))
	}
	if len(c.TLS.Certificates) == 0 {
		switch c.Issuer.Mode {
		case "ca", "self_signed":
		default:
			add(fieldErr("issuer.mode", "%q: use ca or self_signed", c.Issuer.Mode))
		}
		switch c.Issuer.KeyType {
		case "p256", "p384", "rsa2048", "rsa3072":
		default:
			add(fieldErr("issuer.key_type", "%q: use p256, p384, rsa2048 or rsa3072", c.Issuer.KeyType))
		}
		if (c.Issuer.CACertFile == "") != (c.Issuer.CAKeyFile == "") {
			add(fieldErr("issuer.ca_cert_file", "ca_cert_file and ca_key_file go together"))
		} else if c.Issuer.CACertFile != "" {
			add(checkReadable("issuer.ca_cert_file", c.Issuer.CACertFile))
			add(checkReadable("issuer.ca_key_file", c.Issuer.CAKeyFile))
		}
		if c.Issuer.LeafLifetime < certs.MinLeafLifetime || c.Issuer.LeafLifetime > certs.MaxLeafLifetime {
			add(fieldErr("issuer.leaf_lifetime", "%v is outside %v..%v", c.Issuer.LeafLifetime, certs.MinLeafLifetime, certs.MaxLeafLifetime))
		}
		if c.Issuer.RenewBefore < 0 || c.Issuer.RenewBefore > c.Issuer.LeafLifetime/10*9 {
			add(fieldErr("issuer.renew_before", "%v must be above 0 and below leaf_lifetime (%v), at most 90%% of it; or 0 for a third of it", c.Issuer.RenewBefore, c.Issuer.LeafLifetime))
		}
		for i, h := range c.Issuer.Hosts {
			if !validServerName(h) {
				add(fieldErr(fmt.Sprintf("issuer.hosts[%d]", i), "%q is not a host name or IP address", h))
			}
		}
	}
	if _, err := c.StaticUpstreams(); err != nil {
		add(err)
	}
	if _, err := proxy.ParseBalance(c.Upstreams.Balance); err != nil {
		add(&FieldError{Key: "upstreams.balance", Err: err})
	}
	if c.Upstreams.StickyCookie != "" && !validCookieName(c.Upstreams.StickyCookie) {
		add(fieldErr("upstreams.sticky_cookie", "%q is not a valid cookie name", c.Upstreams.StickyCookie))
	}
	if c.Upstreams.MaxFails < 0 {
		add(fieldErr("upstreams.max_fails", "must not be negative"))
	}
	add(positive("upstreams.fail_timeout", c.Upstreams.FailTimeout))
	if c.Upstreams.MaxAttempts < 1 {
		add(fieldErr("upstreams.max_attempts", "must be at least 1"))
	}
	switch {
	case c.Upstreams.SlowStart < 0:
		add(fieldErr("upstreams.slow_start", "must not be negative (0 = none)"))
	case c.Upstreams.SlowStart > 0 && c.Upstreams.Balance == string(proxy.IPHash):
		add(fieldErr("upstreams.slow_start", "not with balance ip_hash, which keeps each client on its node; use round_robin or least_conn, or set 0s"))
	}
	if c.Upstreams.DrainTimeout < 0 {
		add(fieldErr("upstreams.drain_timeout", "must not be negative (0 keeps WebSockets open)"))
	}
	add(positive("upstreams.dial_timeout", c.Upstreams.DialTimeout))
	add(positive("upstreams.response_header_timeout", c.Upstreams.ResponseHeaderTimeout))
	add(positive("upstreams.read_timeout", c.Upstreams.ReadTimeout))
	add(positive("upstreams.idle_conn_timeout", c.Upstreams.IdleConnTimeout))
	if c.Upstreams.KeepAlive < 1 {
		add(fieldErr("upstreams.keepalive", "must be at least 1"))
	}
	if hc := c.Upstreams.HealthCheck; hc.Path != "" {
		if _, err := url.ParseRequestURI(hc.Path); err != nil || !strings.HasPrefix(hc.Path, "/") || strings.ContainsAny(hc.Path, " \t#") {
			add(fieldErr("upstreams.health_check.path", "%q is not a request path; use one like /actuator/health", hc.Path))
		}
	}
	hc := c.Upstreams.HealthCheck
	add(positive("upstreams.health_check.interval", hc.Interval))
	add(positive("upstreams.health_check.timeout", hc.Timeout))
	if hc.Timeout > hc.Interval && hc.Interval > 0 {
		add(fieldErr("upstreams.health_check.timeout", "%v is longer than the interval (%v); a check must end before the next starts", hc.Timeout, hc.Interval))
	}
	if hc.Fails < 1 {
		add(fieldErr("upstreams.health_check.fails", "must be at least 1"))
	}
	if hc.Passes < 1 {
		add(fieldErr("upstreams.health_check.passes", "must be at least 1"))
	}
	ut := c.Upstreams.TLS
	if ut.CAFile != "" {
		add(checkReadable("upstreams.tls.ca_file", ut.CAFile))
	}
	if (ut.CertFile == "") != (ut.KeyFile == "") {
		add(fieldErr("upstreams.tls.cert_file", "cert_file and key_file go together"))
	}
	for i, s := range c.Consul.Services {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "/?# ") {
			add(fieldErr(fmt.Sprintf("consul.services[%d]", i), "%q is not a Consul service name", s))
		}
	}
	if c.Consul.TokenFile != "" {
		add(checkReadable("consul.token_file", c.Consul.TokenFile))
	}
	add(checkAddr("consul.register.check_address", c.Consul.Register.CheckAddress, true))
	if c.Consul.Register.Enabled && c.Listen.Admin == "" && c.Consul.Register.CheckAddress == "" {
		add(fieldErr("consul.register.check_address", "self-registration needs the admin listener for its health check; set listen.admin or this"))
	}
	if _, err := proxy.ParseTrustedProxies(c.HTTP.TrustedProxies); err != nil {
		add(&FieldError{Key: "http.trusted_proxies", Err: fmt.Errorf("%v; use CIDRs like 10.0.0.0/8 or single addresses", err)})
	}
	if _, err := proxy.NewPathPolicy(c.HTTP.BlockedPaths, c.HTTP.AllowedPaths); err != nil {
		add(&FieldError{Key: "http.blocked_paths", Err: err})
	}
	for i, r := range c.HTTP.RestrictedPaths {
		p, _ := proxy.NewPathPolicy(nil, nil)
		if err := p.Restrict([]proxy.PathRestriction{{Prefix: r.Path, AllowFrom: r.AllowFrom}}); err != nil {
			add(&FieldError{Key: fmt.Sprintf("http.restricted_paths[%d]", i), Err: err})
		}
	}
	add(positive("http.read_header_timeout", c.HTTP.ReadHeaderTimeout))
	add(positive("http.idle_timeout", c.HTTP.IdleTimeout))
	if c.HTTP.ClientBodyTimeout < 0 {
		add(fieldErr("http.client_body_timeout", "must not be negative (0 = no limit)"))
	}
	if c.HTTP.SendTimeout < 0 {
		add(fieldErr("http.send_timeout", "must not be negative (0 = no limit)"))
	}
	if c.HTTP.RequestIDHeader != "" {
		if _, err := proxy.CheckRequestIDHeader(c.HTTP.RequestIDHeader); err != nil {
			add(&FieldError{Key: "http.request_id_header", Err: err})
		}
	}
	if _, err := proxy.NewResponseHeaders(c.HTTP.ResponseHeaders); err != nil {
		add(&FieldError{Key: "http.response_headers", Err: err})
	}
	for name := range c.HTTP.ResponseHeaders {
		if c.HTTP.RequestIDHeader != "" && strings.EqualFold(name, c.HTTP.RequestIDHeader) {
			add(fieldErr("http.response_headers", "%s is http.request_id_header, which sets it", name))
		}
	}
	if _, err := proxy.LoadErrorPages(c.HTTP.ErrorPages); err != nil {
		add(&FieldError{Key: "http.error_pages", Err: err})
	}
	// Checked when off too, so that turning it on later finds no surprise.
	cc := c.HTTP.Compression
	if _, err := proxy.NewCompression(cc.Level, cc.MinLength, cc.Types, cc.MaxConcurrent); err != nil {
		add(&FieldError{Key: "http.compression", Err: err})
	}
	if c.HTTP.MaxHeaderBytes < 4096 {
		add(fieldErr("http.max_header_bytes", "%d is too small; at least 4096", c.HTTP.MaxHeaderBytes))
	}
	for key, v := range map[string]int64{"http.max_body_bytes": c.HTTP.MaxBodyBytes, "http.max_connections": int64(c.HTTP.MaxConnections), "http.max_websockets": int64(c.HTTP.MaxWebSockets)} {
		if v < 0 {
			add(fieldErr(key, "%d must not be negative (0 = no limit)", v))
		}
	}
	add(positive("http.shutdown_timeout", c.HTTP.ShutdownTimeout))
	if rl := c.HTTP.RateLimit; rl.RequestsPerSecond < 0 || rl.Burst < 0 || rl.MaxClients < 0 {
		add(fieldErr("http.rate_limit", "requests_per_second, burst and max_clients must not be negative (0 = off / default)"))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add(fieldErr("log.format", "%q: use text or json", c.Log.Format))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add(fieldErr("log.level", "%q: use debug, info, warn or error", c.Log.Level))
	}
	return errors.Join(errs...)
}

// DefaultUpstream is the upstream used when neither upstreams.static nor
// consul.services names one: a Flowable node beside flowgate.
const DefaultUpstream = "127.0.0.1:8090"

// staticList is upstreams.static, or DefaultUpstream when no upstream source
// is configured at all. With Consul configured, an empty static list stays
// empty: flowgate then serves nothing until Consul has answered, rather than
// a guessed local node.
func (c *Config) staticList() []string {
	if len(c.Upstreams.Static) == 0 && len(c.Consul.Services) == 0 {
		return []string{DefaultUpstream}
	}
	return c.Upstreams.Static
}

// StaticUpstreams parses upstreams.static (see staticList for the default).
func (c *Config) StaticUpstreams() ([]discovery.Upstream, error) {
	var out []discovery.Upstream
	for i, s := range c.staticList() {
		key := fmt.Sprintf("upstreams.static[%d]", i)
		addr, opts, _ := strings.Cut(strings.TrimSpace(s), " ")
		u, err := discovery.ParseUpstream(addr)
		if err != nil {
			return nil, &FieldError{Key: key, Err: err}
		}
		for opt := range strings.FieldsSeq(opts) {
			v, ok := strings.CutPrefix(opt, "weight=")
			n, err := strconv.Atoi(v)
			if !ok || err != nil || n < 1 || n > 1000 {
				return nil, fieldErr(key, "%q: the only option is weight=N (1-1000)", opt)
			}
			u.Weight = n
		}
		out = append(out, u)
	}
	return out, nil
}

func checkAddr(key, addr string, emptyOK bool) error {
	if addr == "" {
		if emptyOK {
			return nil
		}
		return fieldErr(key, "required")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fieldErr(key, "%q is not HOST:PORT or :PORT (%v)", addr, err)
	}
	if host != "" && net.ParseIP(host) == nil && !validServerName(host) {
		return fieldErr(key, "%q: bad host %q", addr, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fieldErr(key, "%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

func checkReadable(key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fieldErr(key, "%v", err)
	}
	f.Close()
	return nil
}

func positive(key string, d time.Duration) error {
	if d <= 0 {
		return fieldErr(key, "must be a positive duration like 10s or 5m")
	}
	return nil
}

// validServerName accepts DNS names (optionally "*." wildcards) and IP
// addresses.
func validServerName(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	s = strings.TrimPrefix(s, "*.")
	return validHostname(s)
}

// validHostname reports whether s is a syntactically valid DNS host name.
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func validCookieName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return s != ""
}

// Redacted returns the configuration as YAML with secrets replaced.
func (c Config) Redacted() ([]byte, error) {
	if c.Consul.Token != "" {
		c.Consul.Token = "REDACTED"
	}
	c.Upstreams.Static = c.staticList()
	return yaml.Marshal(c)
}
