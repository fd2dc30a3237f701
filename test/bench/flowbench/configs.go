package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The peers are configured alike, after flowgate's defaults:
//
//   - TLS 1.2 and 1.3 with Mozilla's "intermediate" TLS 1.2 suites, one
//     ECDSA P-256 certificate, session tickets on, HTTP/2 by ALPN;
//   - round robin over the same two upstreams with a keep-alive pool of up
//     to 256 idle connections per upstream (flowgate's upstreams.keepalive
//     default);
//   - Host passed through; X-Forwarded-For and X-Real-IP set to the peer
//     address (client-sent values dropped, as flowgate does without
//     trusted proxies); X-Forwarded-Proto, -Host and -Port set;
//   - WebSocket upgrades passed through, no idle timeout that would cut an
//     idle WebSocket during the run;
//   - gzip at level 5 for application/json of at least 1 KiB (HAProxy's
//     libslz has no levels; it compresses about as gzip -1 does), which
//     only the h1-gzip-100k scenario asks for;
//   - no access log; errors to a file in the work directory.
//
// Requests under /tls/ also get an X-TLS-Resumed response header, so that
// the resumption scenario can count resumed handshakes on the server side.
// flowgate has no such header; its count comes from a metric when present.

// tls12Suites are the TLS 1.2 suites flowgate offers, in OpenSSL names.
const tls12Suites = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" +
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" +
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

// tls12SuitesGo are the same suites in the names Caddy uses.
const tls12SuitesGo = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 " +
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 " +
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"

// keepAlivePerUpstream is the idle pool per upstream.
const keepAlivePerUpstream = 256

// peerEnv is what every peer configuration is built from.
type peerEnv struct {
	dir       string   // the work directory for configs, pid files, logs
	certFile  string   // PEM certificate
	keyFile   string   // PEM private key
	upstreams []string // host:port
	flowgate  string   // the flowgate binary
	root      bool     // running as root

	flowgateEnv []string // KEY=VALUE, added to flowgate's environment
}

// writeFile writes a configuration file into the work directory.
func (e *peerEnv) writeFile(name, content string) (string, error) {
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// flowgateCommand configures flowgate: its defaults plus the files, the
// ports and pprof on the admin listener.
func flowgateCommand(e *peerEnv, port, adminPort int) ([]string, error) {
	var ups strings.Builder
	for _, u := range e.upstreams {
		fmt.Fprintf(&ups, "    - %s\n", u)
	}
	cfg := fmt.Sprintf(`listen:
  https: 127.0.0.1:%d
  http: ""
  admin: 127.0.0.1:%d
state_dir: %s
tls:
  certificates:
    - cert_file: %s
      key_file: %s
  session_tickets: true
upstreams:
  static:
%s  balance: round_robin
  keepalive: %d
http:
  compression:
    enabled: true
    level: 5
    min_length: 1024
    types: [application/json]
admin:
  pprof: true
log:
  level: warn
  access_log: false
`, port, adminPort, filepath.Join(e.dir, "flowgate-state"), e.certFile, e.keyFile, ups.String(), keepAlivePerUpstream)
	path, err := e.writeFile("flowgate.yaml", cfg)
	if err != nil {
		return nil, err
	}
	return []string{e.flowgate, "run", "--config", path}, nil
}

// nginxCommand configures nginx with one worker.
func nginxCommand(e *peerEnv, port int) ([]string, error) {
	var ups strings.Builder
	for _, u := range e.upstreams {
		fmt.Fprintf(&ups, "    server %s;\n", u)
	}
	user := ""
	if e.root {
		user = "user root;\n"
	}
	tmp := filepath.Join(e.dir, "nginx-tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`%sworker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/nginx-error.log warn;
events { worker_connections 16000; }
http {
  access_log off;
  # Go, HAProxy and Caddy keep a client connection for any number of
  # requests; nginx closes it (and its HTTP/2 connection with GOAWAY) after
  # 1000 by default, and recycles upstream connections likewise.
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path %[3]s/body;
  proxy_temp_path %[3]s/proxy;
  fastcgi_temp_path %[3]s/fastcgi;
  uwsgi_temp_path %[3]s/uwsgi;
  scgi_temp_path %[3]s/scgi;
  gzip on;
  gzip_comp_level 5;
  gzip_min_length 1024;
  gzip_types application/json;
  gzip_proxied any;
  gzip_vary on;
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream backend {
%[4]s    keepalive %[5]d;
    keepalive_requests 1000000;
    keepalive_timeout 90s;
  }
  server {
    listen 127.0.0.1:%[6]d ssl http2;
    ssl_certificate %[7]s;
    ssl_certificate_key %[8]s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers %[9]s;
    ssl_session_tickets on;
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    proxy_read_timeout 1h;
    location / { proxy_pass http://backend; }
    location /tls/ {
      proxy_pass http://backend;
      add_header X-TLS-Resumed $ssl_session_reused;
    }
  }
}
`, user, e.dir, tmp, ups.String(), keepAlivePerUpstream*len(e.upstreams), port, e.certFile, e.keyFile, tls12Suites)
	path, err := e.writeFile("nginx.conf", cfg)
	if err != nil {
		return nil, err
	}
	return []string{"nginx", "-p", e.dir, "-c", path, "-e", filepath.Join(e.dir, "nginx-error.log")}, nil
}

// haproxyCommand configures HAProxy with one thread. HAProxy reads the
// certificate and key from one PEM file.
func haproxyCommand(e *peerEnv, port int) ([]string, error) {
	cert, err := os.ReadFile(e.certFile)
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(e.keyFile)
	if err != nil {
		return nil, err
	}
	pem, err := e.writeFile("haproxy.pem", string(cert)+string(key))
	if err != nil {
		return nil, err
	}
	var servers strings.Builder
	for i, u := range e.upstreams {
		fmt.Fprintf(&servers, "  server up%d %s\n", i, u)
	}
	cfg := fmt.Sprintf(`global
  nbthread 1
  maxconn 9000
  pidfile %[1]s/haproxy.pid
  stats socket %[1]s/haproxy.sock mode 600 level admin
  ssl-default-bind-ciphers %[2]s
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 60s
  timeout http-keep-alive 120s
  timeout tunnel 1h
frontend https
  bind 127.0.0.1:%[3]d ssl crt %[4]s alpn h2,http/1.1
  http-request set-header X-Real-IP %%[src]
  http-request set-header X-Forwarded-For %%[src]
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Host %%[req.hdr(host)]
  http-request set-header X-Forwarded-Port %%[dst_port]
  http-request set-var(txn.resumed) ssl_fc_is_resumed if { path_beg /tls/ }
  http-response set-header X-TLS-Resumed %%[var(txn.resumed)] if { var(txn.resumed) -m found }
  compression algo gzip
  compression type application/json
  default_backend upstreams
backend upstreams
  balance roundrobin
  http-reuse always
%[5]s`, e.dir, tls12Suites, port, pem, servers.String())
	path, err := e.writeFile("haproxy.cfg", cfg)
	if err != nil {
		return nil, err
	}
	return []string{"haproxy", "-f", path}, nil
}

// caddyCommand configures Caddy with the admin endpoint and automatic HTTPS
// off. Caddy sets X-Forwarded-For, -Proto and -Host itself.
func caddyCommand(e *peerEnv, port int) ([]string, error) {
	cfg := fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %[1]s/caddy-data
	servers {
		protocols h1 h2
	}
}
https://:%[2]d {
	tls %[3]s %[4]s {
		protocols tls1.2 tls1.3
		ciphers %[5]s
	}
	header /tls/* X-TLS-Resumed {http.request.tls.resumed}
	encode {
		gzip 5
		minimum_length 1024
		match {
			header Content-Type application/json*
		}
	}
	reverse_proxy %[6]s {
		lb_policy round_robin
		header_up X-Real-IP {remote_host}
		header_up X-Forwarded-Port {http.request.port}
		transport http {
			keepalive 90s
			keepalive_idle_conns %[7]d
			keepalive_idle_conns_per_host %[8]d
		}
	}
}
`, e.dir, port, e.certFile, e.keyFile, tls12SuitesGo, strings.Join(e.upstreams, " "),
		keepAlivePerUpstream*len(e.upstreams), keepAlivePerUpstream)
	path, err := e.writeFile("Caddyfile", cfg)
	if err != nil {
		return nil, err
	}
	return []string{"caddy", "run", "--config", path, "--adapter", "caddyfile"}, nil
}
