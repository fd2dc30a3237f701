package deploy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/agent"
)

// TestQuickStartDefaults runs flowgate as the Quick start does, on its
// embedded defaults (only the listeners moved to free loopback ports and the
// state into a temp dir), and follows the README: it becomes ready, serves
// the built-in CA on the admin and HTTP listeners, HTTPS verifies against
// that CA for localhost, and `flowgate health` (the container HEALTHCHECK)
// agrees.
func TestQuickStartDefaults(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	fg := startFlowgate(t, []string{
		"FLOWGATE_CONFIG=",
		"FLOWGATE_HTTPS_ADDR=127.0.0.1:0",
		"FLOWGATE_HTTP_ADDR=127.0.0.1:0",
		"FLOWGATE_ADMIN_ADDR=127.0.0.1:0",
		"FLOWGATE_STATE_DIR=" + state,
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url string) (int, []byte) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	if code, body := get("http://" + fg.admin + "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: got %d %q; want 200", code, body)
	}
	code, caPEM := get("http://" + fg.admin + agent.CAPath)
	if code != http.StatusOK {
		t.Fatalf("admin %s: got %d; want 200", agent.CAPath, code)
	}
	if code, viaHTTP := get("http://" + fg.http + agent.CAPath); code != http.StatusOK || !bytes.Equal(viaHTTP, caPEM) {
		t.Errorf("HTTP listener %s: got %d, same CA %v; want 200 and the admin's CA", agent.CAPath, code, bytes.Equal(viaHTTP, caPEM))
	}
	onDisk, err := os.ReadFile(filepath.Join(state, "ca.crt"))
	if err != nil || !bytes.Equal(onDisk, caPEM) {
		t.Errorf("state dir ca.crt: err %v, same as served %v; want the served CA", err, bytes.Equal(onDisk, caPEM))
	}
	if fi, err := os.Stat(filepath.Join(state, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state dir ca.key: %v (err %v); want mode 0600", fi, err)
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("served CA is not PEM: %q", caPEM)
	}
	conn, err := tls.Dial("tcp", fg.https, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("HTTPS handshake for localhost with the served CA trusted: %v", err)
	}
	if v := conn.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("TLS version %x; want 1.2 or later", v)
	}
	conn.Close()

	// The README's other way to get the CA.
	if r := runCmd(t, nil, flowgateBin(t), "cert", "ca", "--state-dir", state); r.err != nil || r.stdout != string(caPEM) {
		t.Errorf("flowgate cert ca --state-dir: got %q (err %v, %s); want the served CA", r.stdout, r.err, r.stderr)
	}

	r := runCmd(t, nil, flowgateBin(t), "health", "--admin-addr", fg.admin)
	if r.err != nil || strings.TrimSpace(r.stdout) != "ready" {
		t.Errorf("flowgate health: got %q (err %v, %s); want ready", r.stdout, r.err, r.stderr)
	}
}
