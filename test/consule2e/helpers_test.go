package consule2e

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/flowgate/flowgate/agent"
	consultest "github.com/flowgate/flowgate/test/consul"
	"github.com/flowgate/flowgate/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// cluster is a Consul dev agent, the stub nodes of one Consul service, and
// flowgate discovering that service.
type cluster struct {
	t       *testing.T
	consul  *consultest.Agent
	service string
	nodes   map[string]*harness.Stub
	fg      *harness.Flowgate
}

// newCluster starts a Consul agent and one stub node per name; it registers
// nothing and starts no flowgate.
func newCluster(t *testing.T, service string, names ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, consul: consultest.Start(t), service: service, nodes: make(map[string]*harness.Stub)}
	for _, n := range names {
		c.nodes[n] = harness.StartStub(t, n)
	}
	return c
}

// startFlowgate starts flowgate the way an operator would, with
// --consul-service and --consul-addr; config, when not empty, is its
// configuration file.
func (c *cluster) startFlowgate(config string, args ...string) *harness.Flowgate {
	c.t.Helper()
	args = append([]string{"--consul-service", c.service, "--consul-addr", c.consul.Addr}, args...)
	c.fg = harness.StartFlowgate(c.t, harness.Options{Args: args, Config: config})
	return c.fg
}

// serviceID is the Consul service ID of node name.
func (c *cluster) serviceID(name string) string { return c.service + "-" + name }

// addr returns the address of node name.
func (c *cluster) addr(name string) string {
	c.t.Helper()
	s, ok := c.nodes[name]
	if !ok {
		c.t.Fatalf("no stub node %q", name)
	}
	return s.Addr
}

// register registers node name in Consul with a passing TTL check and
// returns when the Consul API call has returned.
func (c *cluster) register(name string) time.Time {
	c.t.Helper()
	host, portStr, err := net.SplitHostPort(c.addr(name))
	if err != nil {
		c.t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.consul.RegisterService(c.t, consultest.Service{ID: c.serviceID(name), Name: c.service, Address: host, Port: port})
	return time.Now()
}

// deregister removes node name from Consul and returns when the API call
// has returned.
func (c *cluster) deregister(name string) time.Time {
	c.t.Helper()
	c.consul.DeregisterService(c.t, c.serviceID(name))
	return time.Now()
}

// setCheck sets the check of node name ("pass", "warn", "fail") and
// returns when the API call has returned.
func (c *cluster) setCheck(name, status string) time.Time {
	c.t.Helper()
	c.consul.SetCheck(c.t, c.serviceID(name), status)
	return time.Now()
}

// addrs returns the addresses of the named nodes, sorted.
func (c *cluster) addrs(names ...string) []string {
	c.t.Helper()
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, c.addr(n))
	}
	slices.Sort(out)
	return out
}

// upstreams returns the addresses of flowgate's current upstream set (not
// the draining ones), sorted.
func upstreams(st agent.Status) []string {
	var out []string
	for _, u := range st.Upstreams {
		if u.State != "draining" {
			out = append(out, u.Addr)
		}
	}
	slices.Sort(out)
	return out
}

// waitUpstreams waits until flowgate's upstream set is exactly the named
// nodes and returns how long that took.
func (c *cluster) waitUpstreams(timeout time.Duration, names ...string) time.Duration {
	c.t.Helper()
	want := c.addrs(names...)
	start := time.Now()
	var got []string
	if !poll(timeout, func() bool {
		got = upstreams(c.fg.Status())
		return slices.Equal(got, want)
	}) {
		c.t.Fatalf("upstream set after %v: got %v; want %v (nodes %v)", timeout, got, want, names)
	}
	return time.Since(start)
}

// consulStatus returns the /status entry of the cluster's service.
func (c *cluster) consulStatus() agent.Status {
	c.t.Helper()
	st := c.fg.Status()
	if st.Consul == nil || len(st.Consul.Services) != 1 || st.Consul.Services[0].Service != c.service {
		c.t.Fatalf("/status consul: got %+v; want one service %q", st.Consul, c.service)
	}
	return st
}

// poll calls f every 20 ms, finer than harness.Poll, until it returns true
// or timeout passes: the waits here are part of measured delays.
func poll(timeout time.Duration, f func() bool) bool {
	return harness.PollEvery(timeout, 20*time.Millisecond, f)
}

// staleness returns flowgate_discovery_staleness_seconds of the service.
func (c *cluster) staleness() float64 {
	c.t.Helper()
	vs := c.fg.MetricSamples(c.t, "flowgate_discovery_staleness_seconds", fmt.Sprintf("service=%q", c.service))
	if len(vs) == 0 {
		c.t.Fatalf("admin /metrics: no flowgate_discovery_staleness_seconds for service %q", c.service)
	}
	return vs[0]
}

// ms formats a duration in milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
