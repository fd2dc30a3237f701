package consule2e

import (
	"testing"
	"time"
)

// followLimit is how soon after a Consul change the traffic must follow.
const followLimit = time.Second

// TestNodesJoinAndLeaveUnderLoad runs a continuous load through flowgate
// while nodes join, fail their check, recover and leave in Consul: each
// change is followed within a second, and not one request fails.
func TestNodesJoinAndLeaveUnderLoad(t *testing.T) {
	c := newCluster(t, "flowable-routing", "a", "b", "c")
	c.register("a")
	c.register("b")
	c.startFlowgate("")
	c.waitUpstreams(10*time.Second, "a", "b")

	ld := startLoad(t, c.fg, 4, 40*time.Second)
	began := time.Now()
	time.Sleep(700 * time.Millisecond)
	// Each change is a Consul API call; a change can take effect before the
	// call returns, so a phase ends when the next call begins, while delays
	// count from the call's return.
	settle := func(names ...string) {
		time.Sleep(followLimit + 300*time.Millisecond)
		c.waitUpstreams(time.Second, names...) // already so: a check of /status
	}
	join := mark(func() time.Time { return c.register("c") })
	settle("a", "b", "c")
	critical := mark(func() time.Time { return c.setCheck("c", "fail") })
	settle("a", "b")
	recovered := mark(func() time.Time { return c.setCheck("c", "pass") })
	settle("a", "b", "c")
	left := mark(func() time.Time { return c.deregister("c") })
	settle("a", "b")
	ended := time.Now()
	samples := ld.Stop()

	t.Logf("FIGURE: continuous load through join/critical/recover/deregister: %d requests in %v from 4 clients, %d failed",
		len(samples), ended.Sub(began).Round(time.Millisecond), len(samples)-len(okOnly(samples)))
	reportFailures(t, "load through the changes", samples)

	t.Run("two nodes share the traffic", func(t *testing.T) {
		nodes := count(samples, began, join.called)
		t.Logf("FIGURE: two registered nodes, requests per node: a=%d b=%d c=%d", nodes["a"], nodes["b"], nodes["c"])
		if nodes["a"] == 0 || nodes["b"] == 0 || nodes["c"] != 0 {
			t.Errorf("requests per node before c joined: got %v; want a and b, not c", nodes)
		}
	})

	t.Run("a third node gets traffic", func(t *testing.T) {
		first, ok := firstAnswer(samples, "c", join.called)
		if !ok {
			t.Fatalf("node c never answered after its registration")
		}
		d := first.Sub(join.returned)
		t.Logf("FIGURE: third node registered -> first answer from it: %s", ms(d))
		if d > followLimit {
			t.Errorf("delay from registering c to its first answer: got %v; want at most %v", d, followLimit)
		}
		nodes := count(samples, join.returned.Add(followLimit), critical.called)
		if nodes["a"] == 0 || nodes["b"] == 0 || nodes["c"] == 0 {
			t.Errorf("requests per node with c registered: got %v; want all three", nodes)
		}
	})

	t.Run("a critical node is taken out", func(t *testing.T) {
		checkOut(t, samples, "c", critical.returned, recovered.called, "check of c set to critical")
	})

	t.Run("a recovered node is back", func(t *testing.T) {
		first, ok := firstAnswer(samples, "c", recovered.called)
		if !ok {
			t.Fatalf("node c never answered after its check passed again")
		}
		d := first.Sub(recovered.returned)
		t.Logf("FIGURE: check back to passing -> first answer from the node: %s", ms(d))
		if d > followLimit {
			t.Errorf("delay from c passing again to its first answer: got %v; want at most %v", d, followLimit)
		}
	})

	t.Run("a deregistered node is taken out", func(t *testing.T) {
		checkOut(t, samples, "c", left.returned, ended, "c deregistered")
	})
}

// checkOut checks that no request to node started later than followLimit
// after the change at from, among the samples that started before to, and
// that the load went on meanwhile. The figure is the start of the last
// request to the node relative to the change: negative when none started
// after it.
func checkOut(t *testing.T, samples []sample, node string, from, to time.Time, what string) {
	t.Helper()
	var before []sample
	for _, s := range samples {
		if s.start.Before(to) {
			before = append(before, s)
		}
	}
	last, ok := lastStart(before, node)
	if !ok {
		t.Fatalf("%s: node %s never answered before", what, node)
	}
	out := last.Sub(from)
	t.Logf("FIGURE: %s -> last request to the node started %s after the change (negative: none after it)", what, ms(out))
	if out > followLimit {
		t.Errorf("%s: a request went to %s %v after the change; want none after %v", what, node, out, followLimit)
	}
	nodes := count(samples, from.Add(followLimit), to)
	others := 0
	for n, k := range nodes {
		if n != node {
			others += k
		}
	}
	if others == 0 || nodes[node] != 0 {
		t.Errorf("%s: requests per node from %v after the change on: got %v; want some, none to %s", what, followLimit, nodes, node)
	}
}

// okOnly returns the successful samples.
func okOnly(samples []sample) []sample {
	var out []sample
	for _, s := range samples {
		if s.ok() {
			out = append(out, s)
		}
	}
	return out
}

// change is a Consul API call: when it was made and when it returned.
type change struct{ called, returned time.Time }

// mark runs f, a Consul API call that returns when it returned, and records
// when it was made.
func mark(f func() time.Time) change {
	called := time.Now()
	return change{called: called, returned: f()}
}
