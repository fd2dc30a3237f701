package discovery

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	consultest "github.com/flowgate/flowgate/test/consul"
)

func TestNewRegistrationValidation(t *testing.T) {
	valid := func() RegistrationOptions {
		return RegistrationOptions{Port: 8443, CheckURL: "http://127.0.0.1:9901/readyz"}
	}
	tests := []struct {
		name    string
		edit    func(*RegistrationOptions)
		wantErr string // substring; empty means valid
	}{
		{"defaults", func(*RegistrationOptions) {}, ""},
		{"no port", func(o *RegistrationOptions) { o.Port = 0 }, "port 0"},
		{"port too high", func(o *RegistrationOptions) { o.Port = 70000 }, "port 70000"},
		{"no check URL", func(o *RegistrationOptions) { o.CheckURL = "" }, "readiness URL"},
		{"check URL without scheme", func(o *RegistrationOptions) { o.CheckURL = "127.0.0.1:9901/readyz" }, "check URL"},
		{"check URL not http", func(o *RegistrationOptions) { o.CheckURL = "ftp://127.0.0.1/readyz" }, "must be http(s)"},
		{"bad address", func(o *RegistrationOptions) { o.Address = "http://edge" }, "not an IP address or host name"},
		{"bad name", func(o *RegistrationOptions) { o.Name = "flow gate" }, "space"},
		{"bad ID", func(o *RegistrationOptions) { o.ID = "a/b" }, "service ID"},
		{"negative interval", func(o *RegistrationOptions) { o.CheckInterval = -time.Second }, "negative"},
		{"cert without key", func(o *RegistrationOptions) { o.TLS.CertFile = "c.pem" }, "must be set together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.edit(&o)
			r, err := NewRegistration(o)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewRegistration: got %v; want no error", err)
				}
				host, _ := os.Hostname()
				if want := "flowgate-" + host + "-8443"; r.ID() != want {
					t.Errorf("default ID: got %q; want %q", r.ID(), want)
				}
				chk := r.reg.Check
				if chk.Interval != "10s" || chk.DeregisterCriticalServiceAfter != "1m0s" || chk.TLSSkipVerify || chk.HTTP != o.CheckURL {
					t.Errorf("check: got %+v; want the readiness URL every 10s, deregistered after 1m, TLS verified", chk)
				}
				return
			}
			if !errors.Is(err, ErrConsulOptions) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewRegistration: got %v; want ErrConsulOptions containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestRegistrationAgent registers with a real agent, follows the readiness
// check, survives an agent restart and deregisters.
func TestRegistrationAgent(t *testing.T) {
	agent := consultest.Start(t)
	var ready atomic.Bool
	ready.Store(true)
	readyz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(readyz.Close)

	opts := RegistrationOptions{
		Port: 8443, Address: "127.0.0.1", Tags: []string{"edge"}, Meta: map[string]string{"secure": "true"},
		CheckURL: readyz.URL + "/readyz", CheckInterval: 500 * time.Millisecond,
		ResyncInterval: 300 * time.Millisecond, Logger: testLogger(t),
	}
	opts.ConsulClientOptions.Address = agent.Addr
	r, err := NewRegistration(opts)
	if err != nil {
		t.Fatalf("NewRegistration: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	passing := func() int {
		t.Helper()
		es, _, err := agent.Client().Health().Service("flowgate", "edge", true, nil)
		if err != nil {
			return -1 // the agent may be restarting
		}
		for _, e := range es {
			if e.Service.ID != r.ID() || e.Service.Port != 8443 || e.Service.Address != "127.0.0.1" || e.Service.Meta["secure"] != "true" {
				t.Fatalf("registered service: got %+v; want ID %s on 127.0.0.1:8443 with secure=true", e.Service, r.ID())
			}
		}
		return len(es)
	}
	eventually(t, "the registration to pass its check", func() bool { return passing() == 1 })

	ready.Store(false)
	eventually(t, "the check to fail when /readyz does", func() bool { return passing() == 0 })
	ready.Store(true)
	eventually(t, "the check to pass again", func() bool { return passing() == 1 })

	agent.Restart(t) // the new agent knows nothing; Run registers again
	eventually(t, "the registration after the agent restart", func() bool { return passing() == 1 })

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	if err := r.Deregister(dctx); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	registered := func() bool {
		svcs, _, err := agent.Client().Catalog().Service("flowgate", "", nil)
		return err != nil || len(svcs) > 0
	}
	if registered() {
		t.Fatal("catalog after Deregister: service still there; want gone")
	}
	time.Sleep(3 * opts.ResyncInterval)
	if registered() {
		t.Error("catalog after Deregister and three resync intervals: service is back; want Run to leave it gone")
	}
	if err := r.Deregister(dctx); err != nil {
		t.Errorf("second Deregister: got %v; want nil (already gone)", err)
	}
	if ok, err := r.Registered(dctx); ok || err != nil {
		t.Errorf("Registered after Deregister: got %v, %v; want false, nil", ok, err)
	}
}

// eventually polls cond every 50 ms for up to 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 15s for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
