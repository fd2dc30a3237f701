package consule2e

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	consultest "github.com/flowgate/flowgate/test/consul"
	"github.com/flowgate/flowgate/test/harness"
)

// TestSelfRegistration starts flowgate with --consul-register in front of a
// healthy node: it shows in Consul's health API as service "flowgate" on its
// HTTPS port with a passing check (Consul calls the admin /readyz), and it
// is gone from Consul after SIGTERM.
func TestSelfRegistration(t *testing.T) {
	consul := consultest.Start(t)
	stub := harness.StartStub(t, "a")
	fg := harness.StartFlowgate(t, harness.Options{
		Args:      []string{"--consul-addr", consul.Addr, "--consul-register"},
		Upstreams: []string{stub.Addr},
	})
	started := time.Now()
	if resp, body := fg.Get("/headers"); resp.StatusCode != 200 {
		t.Fatalf("GET /headers: got %d %q; want 200 (flowgate must be ready for its check to pass)", resp.StatusCode, body)
	}
	_, httpsPort, err := net.SplitHostPort(fg.HTTPS)
	if err != nil {
		t.Fatal(err)
	}
	health := consul.Client().Health()

	// Consul runs an HTTP check first after a random part of its interval
	// (10 s), so passing can take that long.
	var entries []*api.ServiceEntry
	if !poll(20*time.Second, func() bool {
		entries, _, err = health.Service("flowgate", "", true, nil)
		return err == nil && len(entries) == 1
	}) {
		all, _, _ := health.Service("flowgate", "", false, nil)
		t.Fatalf("consul health of service flowgate after 20 s: got %d passing (%v), all: %s; want one passing", len(entries), err, describe(all))
	}
	t.Logf("FIGURE: --consul-register: passing in consul %s after flowgate served", ms(time.Since(started)))
	e := entries[0]
	if got := strconv.Itoa(e.Service.Port); got != httpsPort {
		t.Errorf("registered port: got %s; want the HTTPS port %s", got, httpsPort)
	}
	if e.Service.Address != "127.0.0.1" {
		t.Errorf("registered address: got %q; want 127.0.0.1, the HTTPS listener's", e.Service.Address)
	}
	var check *api.HealthCheck
	for _, c := range e.Checks {
		if c.ServiceID == e.Service.ID {
			check = c
		}
	}
	if check == nil || check.Status != api.HealthPassing || check.Type != "http" {
		t.Fatalf("check of the registration: got %+v; want a passing http check", check)
	}
	t.Logf("FIGURE: registration %q port %d, check %q: %s", e.Service.ID, e.Service.Port, check.Name, check.Output)

	if err := fg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if code, err := fg.Wait(20 * time.Second); err != nil || code != 0 {
		t.Errorf("flowgate after SIGTERM: got exit code %d, %v; want 0", code, err)
	}
	exited := time.Since(stopped)
	all, _, err := health.Service("flowgate", "", false, nil)
	if err != nil {
		t.Fatalf("consul health of service flowgate: %v", err)
	}
	if len(all) != 0 {
		t.Errorf("service flowgate in consul after flowgate exited: got %s; want none", describe(all))
	}
	services, err := consul.Client().Agent().Services()
	if err != nil {
		t.Fatalf("consul agent services: %v", err)
	}
	if _, ok := services[e.Service.ID]; ok {
		t.Errorf("consul agent still knows %q after flowgate exited; want it deregistered", e.Service.ID)
	}
	t.Logf("FIGURE: SIGTERM -> flowgate exited after %s, deregistered from consul", ms(exited))
}

// describe lists service entries with their aggregated check state.
func describe(es []*api.ServiceEntry) string {
	s := "["
	for i, e := range es {
		if i > 0 {
			s += " "
		}
		s += e.Service.ID + ":" + e.Checks.AggregatedStatus()
	}
	return s + "]"
}
