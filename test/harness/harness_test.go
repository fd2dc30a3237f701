package harness

import (
	"encoding/json"
	"net/http"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(M(m)) }

func TestLogFields(t *testing.T) {
	tests := []struct {
		name, line string
		want       map[string]string
	}{
		{
			name: "text",
			line: `time=2026-01-02T03:04:05.000Z level=INFO msg="flowgate serving" https=127.0.0.1:40001 http="" admin=127.0.0.1:40003 version=dev`,
			want: map[string]string{"time": "2026-01-02T03:04:05.000Z", "level": "INFO", "msg": "flowgate serving", "https": "127.0.0.1:40001", "http": "", "admin": "127.0.0.1:40003", "version": "dev"},
		},
		{
			name: "json",
			line: `{"level":"INFO","msg":"flowgate serving","https":"[::]:8443","http":"","admin":"127.0.0.1:9100"}`,
			want: map[string]string{"level": "INFO", "msg": "flowgate serving", "https": "[::]:8443", "http": "", "admin": "127.0.0.1:9100"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, logFields(tt.line)); diff != "" {
				t.Errorf("logFields mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHasFlag(t *testing.T) {
	args := []string{"--https-addr", "127.0.0.1:1", "-state-dir=/x", "--upstream=a"}
	for name, want := range map[string]bool{"https-addr": true, "state-dir": true, "upstream": true, "http-addr": false, "https": false} {
		if got := hasFlag(args, name); got != want {
			t.Errorf("hasFlag(%q): got %v; want %v", name, got, want)
		}
	}
}

// TestFlowgateThroughStub starts the real binaries: a stub node and
// flowgate in front of it, and checks that a request makes the round trip
// and that the harness read the addresses and the CA.
func TestFlowgateThroughStub(t *testing.T) {
	stub := StartStub(t, "n1")
	fg := StartFlowgate(t, Options{Upstreams: []string{stub.Addr}})
	if fg.CAPEM == nil || fg.TLS.InsecureSkipVerify {
		t.Fatalf("got no built-in CA from the admin listener; want one (the default certificate comes from the issuer)")
	}
	resp, body := fg.Get("/headers")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /headers: got status %d; want 200\n%s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Node"); got != "n1" {
		t.Errorf("X-Node: got %q; want n1", got)
	}
	var echo struct{ Node, Host string }
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatalf("decoding /headers: %v\n%s", err, body)
	}
	if echo.Host != fg.HTTPS {
		t.Errorf("Host seen by the node: got %q; want %q", echo.Host, fg.HTTPS)
	}
	if st := fg.Status(); len(st.Upstreams) != 1 || st.Upstreams[0].Addr != stub.Addr {
		t.Errorf("/status upstreams: got %+v; want one, %s", st.Upstreams, stub.Addr)
	}
	stub.Kill()
	stub.Restart()
	if resp, _ := fg.Get("/headers"); resp.StatusCode != http.StatusOK {
		t.Errorf("after the stub's restart: got status %d; want 200", resp.StatusCode)
	}
	if err := fg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := fg.Wait(stopTimeout); err != nil || code != 0 {
		t.Errorf("flowgate after SIGTERM: got exit code %d, %v; want 0", code, err)
	}
}
