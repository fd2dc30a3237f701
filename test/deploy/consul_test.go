package deploy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/flowgate/flowgate/agent"
	"github.com/flowgate/flowgate/test/consul"
)

const (
	flowableService = "deploy/consul/flowable.json"
	flowgateService = "deploy/consul/flowgate.json"
)

// registerFile registers a service definition file with the Consul CLI, as
// an operator would.
func registerFile(t testing.TB, a *consultest.Agent, path string) {
	t.Helper()
	r := runCmd(t, nil, consultest.Binary(t), "services", "register", "-http-addr=http://"+a.Addr, path)
	if r.err != nil {
		t.Fatalf("consul services register %s: %v\n%s%s", path, r.err, r.stdout, r.stderr)
	}
}

// serviceCheck returns the agent's check of a service instance.
func serviceCheck(t testing.TB, a *consultest.Agent, serviceID string) *api.AgentCheck {
	t.Helper()
	checks, err := a.Client().Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if c.ServiceID == serviceID {
			return c
		}
	}
	t.Fatalf("consul agent has no check for service %q", serviceID)
	return nil
}

// TestConsulServiceDefinitions registers both files with a real Consul agent
// and finds them in its catalog as flowgate expects them.
func TestConsulServiceDefinitions(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	root := repoRoot(t)
	registerFile(t, a, filepath.Join(root, flowableService))
	registerFile(t, a, filepath.Join(root, flowgateService))

	tests := []struct {
		file, name, id string
		port           int
		meta           string
		checkURL       string
	}{
		{flowableService, "flowable", "flowable-8090", 8090, "false", "http://127.0.0.1:8090/actuator/health"},
		{flowgateService, "flowgate", "flowgate", 443, "true", "http://" + agent.Default().Listen.Admin + "/readyz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, _, err := a.Client().Catalog().Service(tt.name, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Fatalf("%s: catalog service %q: got %d instances; want 1", tt.file, tt.name, len(entries))
			}
			e := entries[0]
			if e.ServiceID != tt.id || e.ServicePort != tt.port || e.ServiceMeta["secure"] != tt.meta {
				t.Errorf("%s: catalog entry id %q port %d meta secure %q; want %q %d %q", tt.file, e.ServiceID, e.ServicePort, e.ServiceMeta["secure"], tt.id, tt.port, tt.meta)
			}
			// The agent does not report a check's URL back, so read it from
			// the file that the agent just accepted.
			c := serviceCheck(t, a, tt.id)
			if c.Type != "http" {
				t.Errorf("%s: check type %q; want http", tt.file, c.Type)
			}
			var def struct {
				Service struct {
					Check struct{ HTTP string }
				}
			}
			if err := json.Unmarshal(repoFile(t, tt.file), &def); err != nil {
				t.Fatal(err)
			}
			if def.Service.Check.HTTP != tt.checkURL {
				t.Errorf("%s: check URL %q; want %q", tt.file, def.Service.Check.HTTP, tt.checkURL)
			}
		})
	}
}

// TestExampleConfigServesThroughConsul runs flowgate with deploy/flowgate.yaml
// (listeners on free loopback ports, Consul pointed at a test agent) in
// front of a Flowable stand-in registered from deploy/consul/flowable.json,
// and checks what the example promises: traffic reaches the node Consul
// reports, actuators are blocked except health, the redirect goes to the
// server name, TLS below 1.2 is refused.
func TestExampleConfigServesThroughConsul(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)

	var mu sync.Mutex
	var seen []*http.Request
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		if r.URL.Path == "/actuator/health" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"status":"UP"}`)
			return
		}
		io.WriteString(w, "flowable node at "+r.URL.Path)
	}))
	t.Cleanup(node.Close)
	nodeURL, _ := url.Parse(node.URL)
	nodePort, _ := strconv.Atoi(nodeURL.Port())

	// deploy/consul/flowable.json, pointed at the stand-in and checked every
	// second instead of ten.
	var def map[string]map[string]any
	if err := json.Unmarshal(repoFile(t, flowableService), &def); err != nil {
		t.Fatalf("%s: %v", flowableService, err)
	}
	def["service"]["port"] = nodePort
	check := def["service"]["check"].(map[string]any)
	check["http"] = node.URL + "/actuator/health"
	check["interval"] = "1s"
	defPath := filepath.Join(t.TempDir(), "flowable.json")
	b, _ := json.Marshal(def)
	if err := os.WriteFile(defPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	registerFile(t, a, defPath)

	cfg := repoFile(t, exampleConfig)
	for key, val := range map[string]string{
		"listen.https":   "127.0.0.1:0",
		"listen.http":    "127.0.0.1:0",
		"listen.admin":   "127.0.0.1:0",
		"consul.address": a.Addr,
		"state_dir":      "/etc/flowgate/state",
	} {
		cfg = setYAML(t, cfg, key, val)
	}
	m := materialize(t, cfg, "/etc/flowgate/")
	fg := startFlowgate(t, nil, "--config", m.path)

	// Wait until Consul's answer has replaced the static fallback.
	want := net.JoinHostPort("127.0.0.1", nodeURL.Port())
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st agent.Status
		if err := getJSON("http://"+fg.admin+"/status", &st); err == nil && st.Ready && upstreamUp(st, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flowgate did not switch to the Consul node %s within 30s", want)
		}
		time.Sleep(100 * time.Millisecond)
	}

	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: m.ca.Pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, fg.https)
			},
		},
	}
	tests := []struct {
		path     string
		code     int
		reachent bool
	}{
		{"/flowable-ui/", http.StatusOK, true},
		{"/actuator/health", http.StatusOK, true},
		{"/actuator/env", http.StatusForbidden, false},
		{"/actuator/heapdump", http.StatusForbidden, false},
	}
	for _, tt := range tests {
		mu.Lock()
		seen = nil
		mu.Unlock()
		resp, err := client.Get("https://flowable.example.com" + tt.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("GET %s: got %d; want %d", tt.path, resp.StatusCode, tt.code)
		}
		mu.Lock()
		var reached *http.Request
		for _, r := range seen {
			if r.URL.Path == tt.path {
				reached = r
			}
		}
		mu.Unlock()
		if (reached != nil) != tt.reachent {
			t.Errorf("GET %s: node reached %v; want %v", tt.path, reached != nil, tt.reachent)
		}
		if reached != nil && (reached.Host != "flowable.example.com" || reached.Header.Get("X-Forwarded-Proto") != "https") {
			t.Errorf("GET %s: node saw Host %q X-Forwarded-Proto %q; want flowable.example.com and https", tt.path, reached.Host, reached.Header.Get("X-Forwarded-Proto"))
		}
	}

	// TLS 1.1 is refused (RFC 8996).
	old := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: m.ca.Pool, ServerName: "flowable.example.com", MaxVersion: tls.VersionTLS11},
	}}
	if resp, err := old.Get("https://" + fg.https + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1 handshake: got %s; want it refused", resp.Status)
	}

	// The redirect never follows a forged Host.
	req, _ := http.NewRequest(http.MethodGet, "http://"+fg.http+"/flowable-ui/?a=1", nil)
	req.Host = "evil.example"
	noFollow := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// listen.public_https_port is 0: the redirect names the HTTPS listener's
	// own port (443 in the example, a free port here).
	wantLoc := "https://flowable.example.com:" + port(fg.https) + "/flowable-ui/?a=1"
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != wantLoc {
		t.Errorf("redirect of Host evil.example: got %d %q; want 301 %s", resp.StatusCode, loc, wantLoc)
	}
	if strings.Contains(fg.logs.String(), "level=ERROR") {
		t.Errorf("flowgate logged errors:\n%s", fg.logs.String())
	}
}

// upstreamUp reports whether addr is an upstream taking requests.
func upstreamUp(st agent.Status, addr string) bool {
	for _, u := range st.Upstreams {
		if strings.TrimPrefix(u.Addr, "http://") == addr && u.State == "up" {
			return true
		}
	}
	return false
}

// getJSON fetches a URL and decodes its JSON body.
func getJSON(u string, v any) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
