package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/test/harness"
)

// TestCheck runs `flowgate check`, flowgate's `nginx -t`, on bad and good
// configurations.
func TestCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const token = "c0ffee-consul-token-secret"
	tests := []struct {
		name     string
		config   string
		args     []string
		env      []string
		wantCode int
		want     []string // in stderr on failure, in stdout on success
		notWant  []string // nowhere in the output
	}{
		{
			name:     "unknown key",
			config:   "upstreams:\n  static: [127.0.0.1:8090]\n  balancing: round_robin\n",
			wantCode: 1,
			want:     []string{"balancing", "line 3"},
		},
		{
			name:     "bad listen address",
			config:   "listen:\n  https: 127.0.0.1:99999\n",
			wantCode: 1,
			want:     []string{"listen.https", "99999"},
		},
		{
			name:     "bad upstream address",
			config:   "upstreams:\n  static: ['node1:http']\n",
			wantCode: 1,
			want:     []string{"upstreams.static[0]"},
		},
		{
			name:     "missing certificate file",
			config:   "tls:\n  certificates:\n    - cert_file: " + filepath.Join(dir, "missing.crt") + "\n      key_file: " + filepath.Join(dir, "missing.key") + "\n",
			wantCode: 1,
			want:     []string{"tls.certificates[0].cert_file", filepath.Join(dir, "missing.crt")},
		},
		{
			name:     "bad flag value",
			config:   "",
			args:     []string{"--balance", "fastest"},
			wantCode: 1,
			want:     []string{"upstreams.balance", "fastest"},
		},
		{
			name:     "good config with a consul token",
			config:   "server_names: [flowable.example]\nupstreams:\n  static: ['10.0.0.5:8090 weight=2', 'https://10.0.0.6:8443']\nconsul:\n  token: " + token + "\n",
			args:     []string{"--upstream", "10.0.0.7:8090"},
			wantCode: 0,
			want:     []string{"flowable.example", "10.0.0.7:8090", "token: REDACTED"},
			notWant:  []string{token, "10.0.0.5"}, // the flag replaces the file's list
		},
		{
			name:     "environment overrides the file",
			config:   "upstreams:\n  static: [10.0.0.5:8090]\n",
			env:      []string{"FLOWGATE_UPSTREAM=10.0.0.8:8090,10.0.0.9:8090", "FLOWGATE_BALANCE=least_conn"},
			wantCode: 0,
			want:     []string{"10.0.0.8:8090", "10.0.0.9:8090", "balance: least_conn"},
			notWant:  []string{"10.0.0.5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := write(strings.ReplaceAll(tt.name, " ", "_")+".yaml", tt.config)
			args := append([]string{"check", "--config", cfg}, tt.args...)
			res := harness.RunFlowgate(t, tt.env, args...)
			if res.Code != tt.wantCode {
				t.Fatalf("exit code: got %d; want %d\nstdout:\n%s\nstderr:\n%s", res.Code, tt.wantCode, res.Stdout, res.Stderr)
			}
			out := res.Stderr
			if tt.wantCode == 0 {
				out = res.Stdout
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(res.Stdout+res.Stderr, nw) {
					t.Errorf("output contains %q; want it absent:\n%s%s", nw, res.Stdout, res.Stderr)
				}
			}
		})
	}
}
