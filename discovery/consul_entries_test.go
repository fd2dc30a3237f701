package discovery

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
)

// entry builds a health answer entry for service "flowable" on its own
// node (node address 10.0.0.99) with a passing serfHealth and a passing
// service check.
func entry(id, addr string, port int, opts ...func(*api.ServiceEntry)) *api.ServiceEntry {
	e := &api.ServiceEntry{
		Node: &api.Node{Node: "node-" + id, Address: "10.0.0.99"},
		Service: &api.AgentService{
			ID: id, Service: "flowable", Address: addr, Port: port,
			Weights: api.AgentWeights{Passing: 1, Warning: 1},
		},
		Checks: api.HealthChecks{
			{Node: "node-" + id, CheckID: "serfHealth", Status: api.HealthPassing},
			{Node: "node-" + id, CheckID: "service:" + id, ServiceID: id, Status: api.HealthPassing},
		},
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

// serviceCheck sets the status of the entry's own service check.
func serviceCheck(status string) func(*api.ServiceEntry) {
	return func(e *api.ServiceEntry) { e.Checks[1].Status = status }
}

// addCheck appends a check; serviceID "" makes it a node check.
func addCheck(checkID, serviceID, status string) func(*api.ServiceEntry) {
	return func(e *api.ServiceEntry) {
		e.Checks = append(e.Checks, &api.HealthCheck{CheckID: checkID, ServiceID: serviceID, Status: status})
	}
}

func serfHealth(status string) func(*api.ServiceEntry) {
	return func(e *api.ServiceEntry) { e.Checks[0].Status = status }
}

func weights(passing, warning int) func(*api.ServiceEntry) {
	return func(e *api.ServiceEntry) { e.Service.Weights = api.AgentWeights{Passing: passing, Warning: warning} }
}

func meta(k, v string) func(*api.ServiceEntry) {
	return func(e *api.ServiceEntry) { e.Service.Meta = map[string]string{k: v} }
}

func nodeAddr(a string) func(*api.ServiceEntry) {
	return func(e *api.ServiceEntry) { e.Node.Address = a }
}

func up(addr, id string, weight int, tls bool) Upstream {
	return Upstream{Addr: addr, TLS: tls, Weight: weight, Service: "flowable", ID: id}
}

func TestUpstreamsFromEntries(t *testing.T) {
	tests := []struct {
		name        string
		entries     []*api.ServiceEntry
		passingOnly bool
		want        []Upstream
		wantErrIDs  []string // IDs of the entries reported as skipped
	}{
		{
			name:        "passing",
			entries:     []*api.ServiceEntry{entry("a", "10.0.0.1", 8090)},
			passingOnly: true,
			want:        []Upstream{up("10.0.0.1:8090", "a", 1, false)},
		},
		{
			name:        "warning is filtered when passing only",
			entries:     []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, serviceCheck(api.HealthWarning))},
			passingOnly: true,
		},
		{
			name:    "warning is used with its warning weight when not passing only",
			entries: []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, serviceCheck(api.HealthWarning), weights(10, 2))},
			want:    []Upstream{up("10.0.0.1:8090", "a", 2, false)},
		},
		{
			name:    "critical is never used",
			entries: []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, serviceCheck(api.HealthCritical))},
		},
		{
			name:    "critical beats warning",
			entries: []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, addCheck("c2", "a", api.HealthWarning), serviceCheck(api.HealthCritical))},
		},
		{
			name:    "unknown check state counts as critical",
			entries: []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, serviceCheck("bogus"))},
		},
		{
			name:        "serfHealth critical drops the node",
			entries:     []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, serfHealth(api.HealthCritical)), entry("b", "10.0.0.2", 8090)},
			passingOnly: true,
			want:        []Upstream{up("10.0.0.2:8090", "b", 1, false)},
		},
		{
			name:    "node maintenance",
			entries: []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, addCheck(api.NodeMaint, "", api.HealthCritical))},
		},
		{
			name:    "service maintenance",
			entries: []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, addCheck(api.ServiceMaintPrefix+"a", "a", api.HealthCritical))},
		},
		{
			name: "checks of another instance on the node are ignored",
			entries: []*api.ServiceEntry{entry("a", "10.0.0.1", 8090,
				addCheck(api.ServiceMaintPrefix+"other", "other", api.HealthCritical),
				addCheck("service:other", "other", api.HealthCritical))},
			passingOnly: true,
			want:        []Upstream{up("10.0.0.1:8090", "a", 1, false)},
		},
		{
			name:        "a failing node check drops the instance",
			entries:     []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, addCheck("disk", "", api.HealthCritical))},
			passingOnly: true,
		},
		{
			name:        "no checks at all is passing",
			entries:     []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, func(e *api.ServiceEntry) { e.Checks = nil })},
			passingOnly: true,
			want:        []Upstream{up("10.0.0.1:8090", "a", 1, false)},
		},
		{
			name:        "service address wins over node address",
			entries:     []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, nodeAddr("10.9.9.9"))},
			passingOnly: true,
			want:        []Upstream{up("10.0.0.1:8090", "a", 1, false)},
		},
		{
			name:        "node address when the service has none",
			entries:     []*api.ServiceEntry{entry("a", "", 8090, nodeAddr("10.9.9.9"))},
			passingOnly: true,
			want:        []Upstream{up("10.9.9.9:8090", "a", 1, false)},
		},
		{
			name: "IPv6, bracketed IPv6 and host names",
			entries: []*api.ServiceEntry{
				entry("a", "2001:db8::1", 8090), entry("b", "[2001:db8::2]", 8090), entry("c", "flowable-2.node.consul", 8090),
			},
			passingOnly: true,
			want: []Upstream{
				up("[2001:db8::1]:8090", "a", 1, false), up("[2001:db8::2]:8090", "b", 1, false),
				up("flowable-2.node.consul:8090", "c", 1, false),
			},
		},
		{
			name:        "weights: passing weight, at least 1",
			entries:     []*api.ServiceEntry{entry("a", "10.0.0.1", 8090, weights(5, 1)), entry("b", "10.0.0.2", 8090, weights(0, 0))},
			passingOnly: true,
			want:        []Upstream{up("10.0.0.1:8090", "a", 5, false), up("10.0.0.2:8090", "b", 1, false)},
		},
		{
			name: "secure meta means TLS",
			entries: []*api.ServiceEntry{
				entry("a", "10.0.0.1", 8443, meta("secure", "true")), entry("b", "10.0.0.2", 8443, meta("secure", "TRUE")),
				entry("c", "10.0.0.3", 8090, meta("secure", "false")), entry("d", "10.0.0.4", 8090, meta("secure", "yes please")),
			},
			passingOnly: true,
			want: []Upstream{
				up("10.0.0.3:8090", "c", 1, false), up("10.0.0.4:8090", "d", 1, false),
				up("10.0.0.1:8443", "a", 1, true), up("10.0.0.2:8443", "b", 1, true),
			},
		},
		{
			name: "bad entries are skipped, the good ones kept",
			entries: []*api.ServiceEntry{
				entry("good", "10.0.0.1", 8090),
				entry("no-address", "", 8090, nodeAddr("")),
				entry("port-0", "10.0.0.2", 0),
				entry("port-high", "10.0.0.3", 70000),
				entry("url", "http://10.0.0.4", 8090),
				entry("hostport", "10.0.0.5:8090", 8090),
				entry("space", "flow able", 8090),
				entry("bad-ipv4", "999.1.1.1", 8090),
				entry("zone", "fe80::1%eth0", 8090),
				entry("dash", "-flowable", 8090),
				nil,
				{Node: &api.Node{Address: "10.0.0.6"}},
			},
			passingOnly: true,
			want:        []Upstream{up("10.0.0.1:8090", "good", 1, false)},
			wantErrIDs:  []string{"no-address", "port-0", "port-high", "url", "hostport", "space", "bad-ipv4", "zone", "dash", "", ""},
		},
		{
			name: "unhealthy bad entries are filtered, not reported",
			entries: []*api.ServiceEntry{
				entry("port-0", "10.0.0.2", 0, serviceCheck(api.HealthCritical)),
			},
			passingOnly: true,
		},
		{
			name:        "two instances on one address: the first ID is kept",
			entries:     []*api.ServiceEntry{entry("z", "10.0.0.1", 8090), entry("a", "10.0.0.1", 8090)},
			passingOnly: true,
			want:        []Upstream{up("10.0.0.1:8090", "a", 1, false)},
			wantErrIDs:  []string{"z"},
		},
		{
			name:        "empty answer",
			passingOnly: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := UpstreamsFromEntries("flowable", tt.entries, tt.passingOnly)
			if diff := cmp.Diff(tt.want, got, cmpEmpty); diff != "" {
				t.Errorf("upstreams (-want +got):\n%s", diff)
			}
			var gotIDs []string
			for _, err := range errs {
				var ee *EntryError
				if !errors.As(err, &ee) || !errors.Is(err, ErrBadUpstream) {
					t.Fatalf("error %v: got %T; want *EntryError wrapping ErrBadUpstream", err, err)
				}
				if ee.Service != "flowable" || ee.Reason == "" {
					t.Errorf("error %v: got service %q reason %q; want flowable and a reason", err, ee.Service, ee.Reason)
				}
				gotIDs = append(gotIDs, ee.ID)
			}
			if diff := cmp.Diff(tt.wantErrIDs, gotIDs, cmpEmpty); diff != "" {
				t.Errorf("skipped IDs (-want +got):\n%s", diff)
			}
		})
	}
}

// cmpEmpty treats nil and empty slices as equal.
var cmpEmpty = cmp.FilterValues(func(a, b any) bool {
	return isEmptySlice(a) && isEmptySlice(b)
}, cmp.Ignore())

func isEmptySlice(v any) bool {
	switch s := v.(type) {
	case []Upstream:
		return len(s) == 0
	case []string:
		return len(s) == 0
	}
	return false
}

func TestConvertEntriesCounts(t *testing.T) {
	entries := []*api.ServiceEntry{
		entry("p1", "10.0.0.1", 8090),
		entry("p2-bad", "", 8090, nodeAddr("")),
		entry("w", "10.0.0.3", 8090, serviceCheck(api.HealthWarning)),
		entry("c", "10.0.0.4", 8090, serviceCheck(api.HealthCritical)),
		entry("maint", "10.0.0.5", 8090, addCheck(api.NodeMaint, "", api.HealthCritical)),
		entry("serf", "10.0.0.6", 8090, serfHealth(api.HealthCritical)),
	}
	c := convertEntries("flowable", entries, true)
	want := healthCounts{Passing: 2, Warning: 1, Critical: 3}
	if c.counts != want {
		t.Errorf("counts: got %+v; want %+v", c.counts, want)
	}
	if len(c.upstreams) != 1 || len(c.errs) != 1 {
		t.Errorf("got %d upstreams and %d errors; want 1 and 1", len(c.upstreams), len(c.errs))
	}
}

func TestValidHost(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"10.0.0.1", "10.0.0.1", true},
		{"::1", "::1", true},
		{"[::1]", "::1", true},
		{"2001:DB8::1", "2001:db8::1", true},
		{"flowable", "flowable", true},
		{"flowable_1.service.dc1.consul.", "flowable_1.service.dc1.consul.", true},
		{"[10.0.0.1]", "", false},
		{"[flowable]", "", false},
		{"0.0.0.0", "", false},
		{"[::]", "", false},
		{"224.0.0.1", "", false},
		{"10.0.0", "", false},
		{"1.2.3.4.5", "", false},
		{"a..b", "", false},
		{"a-", "", false},
		{"émile", "", false},
		{"host:80", "", false},
		{"", "", false},
		{string(make([]byte, 254)), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := validHost(tt.in)
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("validHost(%q): got %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzUpstreamsFromEntries feeds arbitrary health answers (as JSON) to the
// conversion: it must never panic, and what it returns must be usable.
func FuzzUpstreamsFromEntries(f *testing.F) {
	for _, es := range [][]*api.ServiceEntry{
		{entry("a", "10.0.0.1", 8090), entry("b", "", 8443, meta("secure", "true"))},
		{entry("a", "10.0.0.1", 8090, serviceCheck(api.HealthWarning), weights(3, 2)), entry("a", "10.0.0.1", 8090, weights(5, 1))},
		{entry("x", "::1", 0), entry("y", "[::1]", 1), nil},
	} {
		data, err := json.Marshal(es)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, true)
		f.Add(data, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, passingOnly bool) {
		entries, ok := decodeEntries(data)
		if !ok {
			return
		}
		got, errs := UpstreamsFromEntries("flowable", entries, passingOnly)
		if len(got)+len(errs) > len(entries) {
			t.Fatalf("got %d upstreams and %d errors from %d entries; want at most one result per entry", len(got), len(errs), len(entries))
		}
		for i, u := range got {
			p, err := ParseUpstream(u.Addr)
			if err != nil || p.Addr != u.Addr {
				t.Errorf("upstream %+v: ParseUpstream(%q) = %v, %v; want the same address back", u, u.Addr, p.Addr, err)
			}
			if u.Weight < 1 || u.Service != "flowable" {
				t.Errorf("upstream %+v: got weight %d service %q; want weight >= 1 and service flowable", u, u.Weight, u.Service)
			}
			if i > 0 && got[i-1].Key() >= u.Key() {
				t.Errorf("upstreams not sorted by unique Key: %q then %q", got[i-1].Key(), u.Key())
			}
		}
		for _, err := range errs {
			if !errors.Is(err, ErrBadUpstream) {
				t.Errorf("error %v does not wrap ErrBadUpstream", err)
			}
		}
		reversed := slices.Clone(entries)
		slices.Reverse(reversed)
		again, _ := UpstreamsFromEntries("flowable", reversed, passingOnly)
		if !Equal(got, again) {
			t.Errorf("result depends on the order of the entries:\n%v\n%v", got, again)
		}
	})
}

// decodeEntries decodes a health answer as the Consul API client does. The
// client's own types panic on some inputs (a null check "Definition"); the
// watch turns that into an error (TestQueryUndecodableAnswer), so here such
// an input is simply not an answer.
func decodeEntries(data []byte) (entries []*api.ServiceEntry, ok bool) {
	defer func() {
		if recover() != nil {
			entries, ok = nil, false
		}
	}()
	return entries, json.Unmarshal(data, &entries) == nil
}
