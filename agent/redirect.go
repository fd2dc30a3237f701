package agent

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/flowgate/flowgate/certs"
)

// CAPath is where the built-in CA certificate (never a key) can be fetched
// from the HTTP and admin listeners, so that users can trust it once.
const CAPath = certs.CACertificatePath

// redirector answers the plain-HTTP listener: a permanent redirect to the
// same path on HTTPS, but only ever to a host flowgate serves. NGINX's
// `return 301 https://$host$request_uri` trusts the client's Host header,
// which makes an open redirect; flowgate does not.
type redirector struct {
	// names are the configured server names, lower case; "*.x" wildcards.
	names []string
	// canonical is the first non-wildcard server name, the target for
	// unknown hosts when unknownHost is "redirect"; empty means none.
	canonical string
	// reject answers 421 to unknown hosts instead of redirecting them.
	reject bool
	// port is the public HTTPS port; "" when it is 443.
	port string
	// hsts is the Strict-Transport-Security value the HTTPS listener
	// sends, precomputed; nil when tls.hsts_max_age is 0.
	hsts []string
	// caPEM serves CAPath when set.
	caPEM func() []byte
}

func newRedirector(cfg *Config, caPEM func() []byte) *redirector {
	rd := &redirector{reject: cfg.UnknownHost == "reject", caPEM: caPEM}
	for _, n := range cfg.ServerNames {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		rd.names = append(rd.names, n)
		if rd.canonical == "" && !strings.HasPrefix(n, "*.") {
			rd.canonical = n
		}
	}
	if p := publicHTTPSPort(cfg); p != 443 {
		rd.port = strconv.Itoa(p)
	}
	if cfg.TLS.HSTSMaxAge > 0 {
		rd.hsts = []string{"max-age=" + strconv.Itoa(int(cfg.TLS.HSTSMaxAge.Seconds()))}
	}
	return rd
}

// publicHTTPSPort is the HTTPS port clients connect to.
func publicHTTPSPort(cfg *Config) int {
	if cfg.Listen.PublicHTTPSPort > 0 {
		return cfg.Listen.PublicHTTPSPort
	}
	_, port, err := net.SplitHostPort(cfg.Listen.HTTPS)
	if err != nil {
		return 443
	}
	n, err := strconv.Atoi(port)
	if err != nil || n == 0 {
		return 443
	}
	return n
}

func (rd *redirector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == CAPath && rd.caPEM != nil {
		serveCA(w, r, rd.caPEM())
		return
	}
	target, code := rd.target(r.Host, r.URL.RequestURI())
	if code != 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Connection", "close")
		w.WriteHeader(code)
		if code == http.StatusMisdirectedRequest {
			w.Write([]byte("this host is not served here\n"))
		} else {
			w.Write([]byte("bad Host header\n"))
		}
		return
	}
	status := http.StatusMovedPermanently
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		status = http.StatusPermanentRedirect // keep the method and body
	}
	w.Header().Set("Location", target)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
}

// target computes the redirect for a Host header and request URI. A non-zero
// code means: answer with that status instead.
func (rd *redirector) target(hostHeader, requestURI string) (string, int) {
	host := strings.ToLower(hostHeader)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" && rd.canonical != "" {
		host = rd.canonical // HTTP/1.0 without Host
	}
	if !validRedirectHost(host) {
		return "", http.StatusBadRequest
	}
	if len(rd.names) > 0 && !matchName(rd.names, host) {
		if rd.reject || rd.canonical == "" {
			return "", http.StatusMisdirectedRequest
		}
		host = rd.canonical
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if rd.port != "" {
		host += ":" + rd.port
	}
	if !strings.HasPrefix(requestURI, "/") {
		requestURI = "/" // "*" or an absolute-form target: go to the root
	}
	target := "https://" + host + requestURI
	if _, err := url.Parse(target); err != nil {
		// A request target Go accepted but that does not make a valid URL
		// (a raw "#" or a stray "%" in the query): keep the path only,
		// or go to the root.
		path, _, _ := strings.Cut(requestURI, "?")
		target = "https://" + host + path
		if _, err := url.Parse(target); err != nil {
			target = "https://" + host + "/"
		}
	}
	return target, 0
}

// misdirected decides what the HTTPS listener does with a request whose
// Host is not a configured server name, so that an unknown Host never reaches
// Flowable (which builds links, password-reset mails among them, from Host
// and X-Forwarded-Host). It returns ok when the host is served; otherwise a
// redirect target to the canonical name, or a status to answer with.
func (rd *redirector) misdirected(hostHeader, requestURI string) (target string, code int, ok bool) {
	if len(rd.names) == 0 {
		return "", 0, true
	}
	host := strings.ToLower(hostHeader)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if matchName(rd.names, strings.TrimSuffix(host, ".")) {
		return "", 0, true
	}
	if rd.reject || rd.canonical == "" {
		return "", http.StatusMisdirectedRequest, false
	}
	target, code = rd.target(rd.canonical, requestURI)
	return target, code, false
}

// validRedirectHost accepts DNS names and IP literals only: no user info, no
// path, no spaces, nothing that could rewrite the redirect's authority.
func validRedirectHost(h string) bool {
	if ip := net.ParseIP(h); ip != nil {
		return !strings.Contains(h, "%") // no IPv6 zones
	}
	return validHostname(h)
}

// matchName reports whether host is one of names, exactly or by a one-label
// wildcard.
func matchName(names []string, host string) bool {
	for _, n := range names {
		if n == host {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if _, after, ok := strings.Cut(host, "."); ok && after == rest {
				return true
			}
		}
	}
	return false
}

func serveCA(w http.ResponseWriter, r *http.Request, pem []byte) {
	if len(pem) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="flowgate-ca.crt"`)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(pem)
}
