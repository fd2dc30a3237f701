package consultest

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestAgentLifecycle(t *testing.T) {
	a := Start(t)
	a.RegisterService(t, Service{ID: "web-1", Name: "web", Port: 8090, Tags: []string{"blue"}})

	entries := func() []*api.ServiceEntry {
		t.Helper()
		es, _, err := a.Client().Health().Service("web", "", true, nil)
		if err != nil {
			t.Fatalf("health query: %v", err)
		}
		return es
	}
	if got := len(entries()); got != 1 {
		t.Fatalf("passing instances after register: got %d; want 1", got)
	}
	a.SetCheck(t, "web-1", "warn")
	if got := len(entries()); got != 0 {
		t.Errorf("passing instances after warn: got %d; want 0", got)
	}
	a.SetCheck(t, "web-1", "pass")
	a.Maintenance(t, "web-1", true)
	if got := len(entries()); got != 0 {
		t.Errorf("passing instances in maintenance: got %d; want 0", got)
	}
	a.Maintenance(t, "web-1", false)

	a.Stop(t)
	if _, _, err := a.Client().Health().Service("web", "", true, nil); err == nil {
		t.Fatal("health query to a stopped agent succeeded; want an error")
	}
	a.Restart(t)
	if got := len(entries()); got != 0 {
		t.Errorf("instances after restart: got %d; want 0 (dev state is lost)", got)
	}
	a.RegisterService(t, Service{ID: "web-1", Name: "web", Port: 8090})
	a.DeregisterService(t, "web-1")
	if got := len(entries()); got != 0 {
		t.Errorf("instances after deregister: got %d; want 0", got)
	}
}
