package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

func knownUpstream(p *Proxy, key string) *upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.known[key]
}

func TestSetUpstreamsReportsChange(t *testing.T) {
	a := discovery.Upstream{Addr: "10.0.0.1:8090", Weight: 1}
	b := discovery.Upstream{Addr: "10.0.0.2:8090", Weight: 1}
	bHeavy := b
	bHeavy.Weight = 5
	bTLS := b
	bTLS.TLS = true
	p := newTestProxy(t, Options{})
	steps := []struct {
		name string
		list []discovery.Upstream
		want bool
		size int
	}{
		{"first set", []discovery.Upstream{a, b}, true, 2},
		{"same set", []discovery.Upstream{a, b}, false, 2},
		{"duplicates collapse", []discovery.Upstream{a, a, b, b}, false, 2},
		{"weight 0 is weight 1", []discovery.Upstream{a, {Addr: b.Addr, Weight: 0}}, false, 2},
		{"weight change", []discovery.Upstream{a, bHeavy}, true, 2},
		{"TLS makes another node", []discovery.Upstream{a, bTLS}, true, 2},
		{"removal", []discovery.Upstream{a}, true, 1},
		{"empty", nil, true, 0},
		{"empty again", []discovery.Upstream{}, false, 0},
	}
	for _, s := range steps {
		if got := p.SetUpstreams(s.list); got != s.want {
			t.Errorf("%s: SetUpstreams reported %v; want %v", s.name, got, s.want)
		}
		if got := p.Size(); got != s.size {
			t.Errorf("%s: Size: got %d; want %d", s.name, got, s.size)
		}
	}
}

// TestSetUpstreamsKeepsState: a node that stays keeps its pooled
// connections, counters and passive-health state.
func TestSetUpstreamsKeepsState(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	clock := newFakeClock()
	p := newTestProxy(t, Options{MaxFails: 1, Now: clock.Now}, a.upstream())
	url, c := front(t, p)
	for range 3 {
		get(t, c, url+"/", nil)
	}
	before := knownUpstream(p, a.upstream().Key())
	before.fail(clock.Now(), 1, 10*time.Second) // eject it by hand

	if !p.SetUpstreams([]discovery.Upstream{a.upstream(), b.upstream()}) {
		t.Fatal("adding a node reported no change")
	}
	after := knownUpstream(p, a.upstream().Key())
	if after != before {
		t.Fatal("the node that stayed is a new *upstream; want the same one")
	}
	if after.transport != before.transport {
		t.Error("the node that stayed has a new transport; want its pooled connections kept")
	}
	st := p.Status()
	if st[0].Requests != 3 || st[0].State != "ejected" {
		t.Errorf("status of the node that stayed: got requests=%d state=%q; want 3, ejected", st[0].Requests, st[0].State)
	}
	// While a is ejected, everything goes to b.
	if _, body, _ := get(t, c, url+"/", nil); body != "b" {
		t.Errorf("got %q; want b while a is ejected", body)
	}

	// Removed and back within the drain window: still the same node.
	p.SetOptions(Options{MaxFails: 1, Now: clock.Now, DrainTimeout: time.Hour})
	p.SetUpstreams([]discovery.Upstream{b.upstream()})
	p.SetUpstreams([]discovery.Upstream{a.upstream(), b.upstream()})
	if knownUpstream(p, a.upstream().Key()) != before {
		t.Error("a node that came back while draining is a new *upstream; want the same one")
	}
}

func TestStatusListsDraining(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	ua := a.upstream()
	ua.Service, ua.ID, ua.Weight = "flowable", "flowable-1", 2
	p := newTestProxy(t, Options{DrainTimeout: time.Hour}, ua, b.upstream())
	p.SetUpstreams([]discovery.Upstream{b.upstream()})
	st := p.Status()
	if len(st) != 2 {
		t.Fatalf("Status: got %d entries; want 2 (one up, one draining)", len(st))
	}
	if st[0].Addr != b.upstream().Addr || st[0].State != "up" || st[0].Weight != 1 {
		t.Errorf("first entry: got %+v; want %s up weight 1", st[0], b.upstream().Addr)
	}
	if st[1].Addr != ua.Addr || st[1].State != "draining" || st[1].Service != "flowable" || st[1].ID != "flowable-1" {
		t.Errorf("second entry: got %+v; want %s draining flowable/flowable-1", st[1], ua.Addr)
	}
	if p.Size() != 1 || p.Available() != 1 {
		t.Errorf("Size, Available: got %d, %d; want 1, 1", p.Size(), p.Available())
	}
}

// TestInFlightRequestFinishesOnRemovedNode: a request in flight when its
// node leaves the set completes.
func TestInFlightRequestFinishesOnRemovedNode(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	a := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.Write([]byte("a"))
	})
	b := newBackend(t, "b", nil)
	p := newTestProxy(t, Options{}, a.upstream())
	url, c := front(t, p)
	done := make(chan string, 1)
	go func() {
		resp, err := c.Get(url + "/")
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		var buf [8]byte
		n, _ := resp.Body.Read(buf[:])
		done <- string(buf[:n])
	}()
	<-entered
	p.SetUpstreams([]discovery.Upstream{b.upstream()})
	close(release)
	if got := <-done; got != "a" {
		t.Errorf("in-flight request: got %q; want \"a\"", got)
	}
	if _, body, _ := get(t, c, url+"/", nil); body != "b" {
		t.Errorf("next request: got %q; want b", body)
	}
}

func TestTLSUpstreamVerified(t *testing.T) {
	srv := httptestTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("secure"))
	}))
	up := discovery.Upstream{Addr: srv.Listener.Addr().String(), TLS: true, Weight: 1}

	t.Run("trusted CA", func(t *testing.T) {
		p := newTestProxy(t, Options{Transport: TransportOptions{TLS: tlsClientFor(srv)}}, up)
		url, c := frontTLS(t, p)
		if status, body, _ := get(t, c, url+"/", nil); status != 200 || body != "secure" {
			t.Errorf("got %d %q; want 200 \"secure\"", status, body)
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		p := newTestProxy(t, Options{}, up) // system roots do not know httptest's CA
		url, c := frontTLS(t, p)
		status, body, _ := get(t, c, url+"/", nil)
		if status != http.StatusBadGateway {
			t.Errorf("got %d %q; want 502", status, body)
		}
		noLeak(t, body, up.Addr, "x509", "certificate")
	})
}
