package main

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// needTools skips a test without the tools it runs, except under CI=true
// where their absence is a failure.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found in PATH (test/install-debian.sh installs it)", tool)
			}
			t.Skipf("SKIPPING: %s not found in PATH", tool)
		}
	}
}

// TestWrkCountsResumedHandshakes runs wrk as the tls-resume scenario does
// against a TLS server that reports resumption in X-TLS-Resumed (in Go's
// canonical spelling, as Caddy sends it): with session tickets wrk resumes
// and the Lua hook counts it; without them nothing resumes and
// checkResumed fails the run.
func TestWrkCountsResumedHandshakes(t *testing.T) {
	needTools(t, "wrk", "taskset")
	for _, tc := range []struct {
		name    string
		tickets bool
		wantErr bool
	}{
		{"session tickets", true, false},
		{"no session tickets", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				resumed := "false"
				if r.TLS.DidResume {
					resumed = "true"
				}
				w.Header().Set("X-TLS-Resumed", resumed)
				w.Write([]byte(strings.Repeat("x", 1024)))
			}))
			srv.TLS = &tls.Config{SessionTicketsDisabled: !tc.tickets}
			// wrk cuts handshakes short when it stops.
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.StartTLS()
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := runWrk(ctx, t.TempDir(), wrkOptions{url: srv.URL + "/tls/bytes", conns: 4, d: time.Second,
				newConns: true, countResumed: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.requests < 10 || r.errors > 0 {
				t.Fatalf("wrk: got %d requests, %d errors (%s); want some requests and no errors", r.requests, r.errors, r.detail)
			}
			reported, resumed := r.extra["server_reported"], r.extra["server_resumed"]
			if reported < float64(r.requests) {
				t.Errorf("X-TLS-Resumed headers counted: got %v; want one per request (%d)", reported, r.requests)
			}
			if tc.tickets && resumed < 0.9*reported || !tc.tickets && resumed != 0 {
				t.Errorf("resumed: got %v of %v; want tickets %v", resumed, reported, tc.tickets)
			}
			if err := checkResumed(r); (err != nil) != tc.wantErr {
				t.Errorf("checkResumed: got %v; want error %v", err, tc.wantErr)
			}
		})
	}
}
