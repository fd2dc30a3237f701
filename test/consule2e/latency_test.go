package consule2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

const (
	// latencyChanges is the number of Consul changes in one series.
	latencyChanges = 50
	// latencyP99Limit bounds the 99th percentile of the delay from a Consul
	// change to the first request routed accordingly.
	latencyP99Limit = 100 * time.Millisecond
	// latencyAttempts is the number of series measured at most. A series
	// whose p99 misses the limit is measured again: on a small shared
	// machine (test packages run in parallel) one descheduled process can
	// take a single change past it, while a slow discovery path fails every
	// series.
	latencyAttempts = 3
	// latencyTimeout bounds the wait for one change to show.
	latencyTimeout = 3 * time.Second
	// probePace is the least time between the starts of two probe requests:
	// the resolution of the measurement, without a busy loop that takes the
	// CPU from flowgate and Consul.
	probePace = 2 * time.Millisecond
)

// TestChangeToRoutingDelay measures, over 50 Consul changes, the delay from
// the Consul API call returning to the first request that flowgate routes
// accordingly. Node a is always registered; node b is in turn registered,
// failed, passed and deregistered. One client sends requests one after the
// other, so round robin over {a, b} alternates strictly: b joined shows as
// the first answer from b, b gone as an answer from a right after another
// answer from a (the first of the two may just have been a's turn).
//
// Changes come at random gaps of up to 100 ms after the previous one was
// seen, so some fall within flowgate's minimum interval between two Consul
// queries, as bursts of changes do in production. A blocking query of the
// test's own notes when Consul announced each change, which splits the
// delay into Consul's part and flowgate's.
func TestChangeToRoutingDelay(t *testing.T) {
	c := newCluster(t, "flowable-latency", "a", "b")
	c.register("a")
	c.startFlowgate("", "--balance", "round_robin")
	c.waitUpstreams(10*time.Second, "a")
	views := watchConsul(t, c, c.serviceID("b"))

	client := newClient(t, c.fg)
	var best series
	for attempt := 1; attempt <= latencyAttempts; attempt++ {
		s := measureSeries(t, c, client, views)
		p99 := percentile(s.delays(), 99)
		t.Logf("FIGURE: consul change -> first request routed accordingly, series %d of at most %d: %s (load average %s)",
			attempt, latencyAttempts, s.summary(), loadAverage())
		if best.changes == nil || p99 < percentile(best.delays(), 99) {
			best = s
		}
		if p99 < latencyP99Limit {
			break
		}
		t.Logf("series %d: p99 %v is not below %v; slow changes:%s", attempt, p99, latencyP99Limit, s.slow(latencyP99Limit))
	}
	if p99 := percentile(best.delays(), 99); p99 >= latencyP99Limit {
		t.Errorf("p99 of the delay from a consul change to routing: got %v in the best of %d series; want below %v; slow changes:%s",
			p99, latencyAttempts, latencyP99Limit, best.slow(latencyP99Limit))
	}
}

// measured is one change: its delays, the probe requests it took and the
// slowest of them (a slow probe request points at a stalled machine rather
// than at discovery).
type measured struct {
	step     string
	in       bool          // the node joined
	delay    time.Duration // from the API call's return to the first request routed accordingly
	consul   time.Duration // from the API call's return to Consul's announcement
	requests int
	slowest  time.Duration
}

// series is the outcome of latencyChanges measured changes.
type series struct{ changes []measured }

func (s series) delays() []time.Duration {
	var out []time.Duration
	for _, m := range s.changes {
		out = append(out, m.delay)
	}
	return out
}

// summary formats the percentiles of the series.
func (s series) summary() string {
	var all, joins, leaves, consul, flowgate []time.Duration
	requests := 0
	for _, m := range s.changes {
		all = append(all, m.delay)
		if m.in {
			joins = append(joins, m.delay)
		} else {
			leaves = append(leaves, m.delay)
		}
		consul = append(consul, m.consul)
		flowgate = append(flowgate, m.delay-m.consul)
		requests += m.requests
	}
	pp := func(ds []time.Duration) string {
		return fmt.Sprintf("p50 %s p99 %s", ms(percentile(ds, 50)), ms(percentile(ds, 99)))
	}
	return fmt.Sprintf("%d changes, %d requests: %s, max %s; joining %s; leaving %s; of which consul's announcement %s, flowgate after it %s",
		len(all), requests, pp(all), ms(slices.Max(all)), pp(joins), pp(leaves), pp(consul), pp(flowgate))
}

// slow lists the changes that took at least limit.
func (s series) slow(limit time.Duration) string {
	var b strings.Builder
	for i, m := range s.changes {
		if m.delay >= limit {
			fmt.Fprintf(&b, "\n  change %d (%s b): %v, consul announced it after %v; %d probe requests, the slowest %v",
				i, m.step, m.delay, m.consul, m.requests, m.slowest)
		}
	}
	return b.String()
}

// measureSeries makes latencyChanges changes to node b and measures each.
func measureSeries(t *testing.T, c *cluster, client *http.Client, views <-chan consulView) series {
	t.Helper()
	url := c.fg.URL("/headers")
	steps := []struct {
		name  string
		apply func() time.Time
		in    bool // b is in the set afterwards
	}{
		{"register", func() time.Time { return c.register("b") }, true},
		{"check critical", func() time.Time { return c.setCheck("b", "fail") }, false},
		{"check passing", func() time.Time { return c.setCheck("b", "pass") }, true},
		{"deregister", func() time.Time { return c.deregister("b") }, false},
	}
	var out series
	for i := range latencyChanges {
		step := steps[i%len(steps)]
		time.Sleep(rand.N(100 * time.Millisecond))
		drain(views)
		done := step.apply()
		m := measured{step: step.name, in: step.in}
		prev := ""
		var seen, announced time.Time
		for deadline := done.Add(latencyTimeout); seen.IsZero(); {
			if time.Now().After(deadline) {
				t.Fatalf("change %d (%s b): routing did not follow within %v", i, step.name, latencyTimeout)
			}
			s := get(client, url)
			m.requests++
			m.slowest = max(m.slowest, s.end.Sub(s.start))
			if !s.ok() {
				t.Fatalf("change %d (%s b): %v", i, step.name, s)
			}
			if (step.in && s.node == "b") || (!step.in && s.node == "a" && prev == "a") {
				seen = s.end
				break
			}
			prev = s.node
			time.Sleep(time.Until(s.start.Add(probePace)))
		}
		for announced.IsZero() {
			select {
			case v := <-views:
				if v.present == step.in {
					announced = v.at
				}
			case <-time.After(latencyTimeout):
				t.Fatalf("change %d (%s b): consul did not announce it within %v", i, step.name, latencyTimeout)
			}
		}
		m.delay, m.consul = seen.Sub(done), announced.Sub(done)
		out.changes = append(out.changes, m)
	}
	c.deregister("b") // b ends registered but critical: start the next series clean
	c.waitUpstreams(5*time.Second, "a")
	return out
}

// consulView is what one answer of Consul's health API said about a node.
type consulView struct {
	at      time.Time
	present bool // the node is among the passing instances
}

// watchConsul follows the passing instances of the cluster's service with
// blocking queries, as flowgate does, and sends whether serviceID is among
// them after every change, until the test ends.
func watchConsul(t *testing.T, c *cluster, serviceID string) <-chan consulView {
	ctx, cancel := context.WithCancel(context.Background())
	views := make(chan consulView, 256)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		var index uint64
		for ctx.Err() == nil {
			q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second, AllowStale: true}).WithContext(ctx)
			es, meta, err := c.consul.Client().Health().Service(c.service, "", true, q)
			if err != nil {
				index = 0
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			if meta.LastIndex == index {
				continue
			}
			index = meta.LastIndex
			v := consulView{at: time.Now()}
			for _, e := range es {
				v.present = v.present || e.Service.ID == serviceID
			}
			select {
			case views <- v:
			default: // the test is not listening; it drains before each change
			}
		}
	}()
	return views
}

// drain discards the views already sent.
func drain(views <-chan consulView) {
	for {
		select {
		case <-views:
		default:
			return
		}
	}
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return s[max(rank, 1)-1]
}

// loadAverage returns the 1-minute load average, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}
