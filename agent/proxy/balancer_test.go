package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSmoothWeightedOrder(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    []int
	}{
		{"empty", nil, nil},
		{"single", []int{1}, []int{0}},
		{"equal", []int{1, 1, 1}, []int{0, 1, 2}},
		{"nginx 5,1,1 interleaves", []int{5, 1, 1}, []int{0, 0, 1, 0, 2, 0, 0}},
		{"2,1", []int{2, 1}, []int{0, 1, 0}},
		{"common divisor", []int{600, 500}, []int{0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0}},
		{"large weights keep their proportions", []int{6000, 5000}, []int{0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := smoothWeightedOrder(tt.weights)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("smoothWeightedOrder(%v) mismatch (-want +got):\n%s", tt.weights, diff)
			}
		})
	}
}

func TestSmoothWeightedOrderShares(t *testing.T) {
	weights := []int{7, 3, 2, 1}
	seq := smoothWeightedOrder(weights)
	count := make([]int, len(weights))
	for _, i := range seq {
		count[i]++
	}
	if diff := cmp.Diff(weights, count); diff != "" {
		t.Errorf("picks per node over one period mismatch (-weights +got):\n%s", diff)
	}
	// Smooth: the heaviest node never runs more than ceil(7/(3+2+1))+1 in a row.
	run, longest := 0, 0
	for _, i := range append(seq, seq...) {
		if i == 0 {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	if longest > 3 {
		t.Errorf("longest run of the heaviest node: got %d; want at most 3 in %v", longest, seq)
	}
}

func TestDivideAndScaleWeights(t *testing.T) {
	tests := []struct {
		weights []int
		limit   int
		want    []int
	}{
		{[]int{1, 1, 1}, 100, []int{1, 1, 1}},
		{[]int{5, 1, 1}, 100, []int{5, 1, 1}},
		{[]int{200, 400, 600}, 100, []int{1, 2, 3}},
		{[]int{999, 1000}, 100, []int{49, 50}},
		{[]int{1000, 1}, 100, []int{99, 1}},
		{[]int{7}, 100, []int{1}},
	}
	for _, tt := range tests {
		if got := scaleWeights(divideWeights(tt.weights), tt.limit); !cmp.Equal(got, tt.want) {
			t.Errorf("scaleWeights(divideWeights(%v), %d) = %v; want %v", tt.weights, tt.limit, got, tt.want)
		}
	}
	if got := scaleWeights([]int{2, 4}, 100); !cmp.Equal(got, []int{2, 4}) {
		t.Errorf("scaleWeights([2 4], 100) = %v; want [2 4] (no division)", got)
	}
}

// TestIPHashConsistentOnAddWithWeights: a node joining moves clients only to
// itself, even when it changes the weights' common divisor.
func TestIPHashConsistentOnAddWithWeights(t *testing.T) {
	list := testUpstreams(3)
	before := newUpstreamSet(list[:2], []int{2, 2})
	after := newUpstreamSet(list, []int{2, 2, 1})
	now := time.Now()
	for _, ip := range clientIPs(5000) {
		a := before.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
		b := after.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
		if a != b && b != list[2] {
			t.Fatalf("client %s moved from %s to %s; want moves only to the new node", ip, a.key, b.key)
		}
	}
}

func TestLargeWeightsStillWeighRoundRobin(t *testing.T) {
	// 12 nodes at weight 1000 and one at 3001 (weights up to 1000 per
	// static node; Consul passes any int): the period exceeds the table
	// bound, yet the heavy node must still get three times the share.
	weights := make([]int, 13)
	for i := range weights {
		weights[i] = 1000
	}
	weights[0] = 3001
	seq := smoothWeightedOrder(weights)
	count := make([]int, len(weights))
	for _, i := range seq {
		count[i]++
	}
	if r := float64(count[0]) / float64(count[1]); r < 2.97 || r > 3.03 {
		t.Errorf("picks per period: heavy %d, light %d; want 3:1", count[0], count[1])
	}
	if len(seq) > maxOrderWeight {
		t.Errorf("period of %d picks; want at most %d", len(seq), maxOrderWeight)
	}
	s := newUpstreamSet(testUpstreams(13), weights)
	if len(s.ring) > maxRingWeight*ringPoints {
		t.Errorf("ring of %d points; want at most %d", len(s.ring), maxRingWeight*ringPoints)
	}
}

func TestRoundRobinEven(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			list := testUpstreams(n)
			s := newUpstreamSet(list, ones(n))
			count := map[*upstream]int{}
			now := time.Now()
			for range 100 * n {
				count[s.pick(&pickOptions{balance: RoundRobin, now: now})]++
			}
			for i, u := range list {
				if count[u] != 100 {
					t.Errorf("node %d picked %d times; want 100", i, count[u])
				}
			}
		})
	}
}

func TestRoundRobinSkipsTriedAndEjected(t *testing.T) {
	list := testUpstreams(3)
	s := newUpstreamSet(list, ones(3))
	now := time.Now()
	list[1].downUntil = now.Add(time.Minute)
	for range 30 {
		u := s.pick(&pickOptions{balance: RoundRobin, now: now, tried: []*upstream{list[0]}})
		if u != list[2] {
			t.Fatalf("got %s; want %s (node 0 tried, node 1 ejected)", u.key, list[2].key)
		}
	}
	if u := s.pick(&pickOptions{balance: RoundRobin, now: now, tried: []*upstream{list[0], list[2]}}); u != nil {
		t.Errorf("got %s; want nil when every node is tried or ejected", u.key)
	}
	if u := newUpstreamSet(nil, nil).pick(&pickOptions{now: now}); u != nil {
		t.Errorf("empty set: got %s; want nil", u.key)
	}
}

func TestLeastConnPrefersLeastLoaded(t *testing.T) {
	tests := []struct {
		name     string
		weights  []int
		inflight []int64
		want     int
	}{
		{"fewest in flight", []int{1, 1, 1}, []int64{5, 1, 3}, 1},
		{"idle node", []int{1, 1, 1}, []int64{2, 2, 0}, 2},
		{"per unit of weight", []int{4, 1}, []int64{4, 2}, 0},
		{"weight does not beat a much lower load", []int{4, 1}, []int64{12, 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := testUpstreams(len(tt.weights))
			for i, n := range tt.inflight {
				list[i].inflight.Store(n)
			}
			s := newUpstreamSet(list, tt.weights)
			for range 10 {
				if got := s.pick(&pickOptions{balance: LeastConn, now: time.Now()}); got != list[tt.want] {
					t.Fatalf("got %s; want %s", got.key, list[tt.want].key)
				}
			}
		})
	}
}

func TestLeastConnTiesRotate(t *testing.T) {
	list := testUpstreams(3)
	s := newUpstreamSet(list, ones(3))
	count := map[*upstream]int{}
	for range 300 {
		count[s.pick(&pickOptions{balance: LeastConn, now: time.Now()})]++
	}
	for i, u := range list {
		if count[u] != 100 {
			t.Errorf("idle node %d picked %d times of 300; want 100", i, count[u])
		}
	}
}

// clientIPs returns n distinct client addresses.
func clientIPs(n int) []string {
	out := make([]string, n)
	a := netip.MustParseAddr("100.64.0.1")
	for i := range out {
		out[i] = a.String()
		a = a.Next()
	}
	return out
}

func TestIPHashSameClientSameNode(t *testing.T) {
	list := testUpstreams(5)
	s := newUpstreamSet(list, ones(5))
	now := time.Now()
	for _, ip := range clientIPs(200) {
		first := s.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
		for range 5 {
			if got := s.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now}); got != first {
				t.Fatalf("client %s: got %s; want %s every time", ip, got.key, first.key)
			}
		}
	}
}

func TestIPHashSpreadsClients(t *testing.T) {
	list := testUpstreams(5)
	s := newUpstreamSet(list, ones(5))
	count := map[*upstream]int{}
	ips := clientIPs(10000)
	for _, ip := range ips {
		count[s.pick(&pickOptions{balance: IPHash, clientIP: ip, now: time.Now()})]++
	}
	for i, u := range list {
		share := float64(count[u]) / float64(len(ips))
		if share < 0.12 || share > 0.28 {
			t.Errorf("node %d holds %.3f of the clients; want about 0.2", i, share)
		}
	}
}

func TestIPHashConsistentOnRemoval(t *testing.T) {
	list := testUpstreams(5)
	full := newUpstreamSet(list, ones(5))
	removed := list[2]
	rest := []*upstream{list[0], list[1], list[3], list[4]}
	smaller := newUpstreamSet(rest, ones(4))
	ips := clientIPs(10000)
	now := time.Now()
	moved, movedFromKept := 0, 0
	for _, ip := range ips {
		before := full.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
		after := smaller.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
		if before != after {
			moved++
			if before != removed {
				movedFromKept++
			}
		}
	}
	if movedFromKept != 0 {
		t.Errorf("%d clients of nodes that stayed moved; want 0", movedFromKept)
	}
	if frac := float64(moved) / float64(len(ips)); frac > 0.2+0.05 {
		t.Errorf("removing one of 5 nodes moved %.3f of the clients; want below 0.25", frac)
	}
	// Adding it back restores every client's node.
	again := newUpstreamSet(list, ones(5))
	for _, ip := range ips[:1000] {
		a := full.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
		b := again.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
		if a != b {
			t.Fatalf("client %s: got %s after re-adding; want %s", ip, b.key, a.key)
		}
	}
}

func TestIPHashFallsBackWhenEjected(t *testing.T) {
	list := testUpstreams(3)
	s := newUpstreamSet(list, ones(3))
	now := time.Now()
	ip := "100.64.9.9"
	home := s.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
	home.downUntil = now.Add(time.Minute)
	got := s.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now})
	if got == nil || got == home {
		t.Fatalf("got %v; want another node while %s is ejected", got, home.key)
	}
	for range 10 {
		if again := s.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now}); again != got {
			t.Fatalf("fallback node changed: got %s; want %s", again.key, got.key)
		}
	}
	for _, u := range list {
		u.downUntil = now.Add(time.Minute)
	}
	if u := s.pick(&pickOptions{balance: IPHash, clientIP: ip, now: now}); u != nil {
		t.Errorf("got %s; want nil when every node is ejected", u.key)
	}
}

func TestParseBalance(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Balance
		ok   bool
	}{
		{"", RoundRobin, true},
		{"round_robin", RoundRobin, true},
		{"least_conn", LeastConn, true},
		{"ip_hash", IPHash, true},
		{"random", "", false},
		{"Round_Robin", "", false},
	} {
		got, err := ParseBalance(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseBalance(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestBalanceThroughProxy drives each method through real servers.
func TestBalanceThroughProxy(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	ua, ub := a.upstream(), b.upstream()
	ua.Weight = 3
	trusted, err := ParseTrustedProxies([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("weighted round robin", func(t *testing.T) {
		p := newTestProxy(t, Options{Balance: RoundRobin}, ua, ub)
		url, c := front(t, p)
		got := map[string]int{}
		for range 40 {
			_, body, _ := get(t, c, url+"/", nil)
			got[body]++
		}
		if diff := cmp.Diff(map[string]int{"a": 30, "b": 10}, got); diff != "" {
			t.Errorf("responses per backend (-want +got):\n%s", diff)
		}
	})
	t.Run("ip hash keeps a forwarded client on one node", func(t *testing.T) {
		p := newTestProxy(t, Options{Balance: IPHash, TrustedProxies: trusted}, ua, ub)
		url, c := front(t, p)
		seen := map[string]bool{}
		for _, ip := range clientIPs(20) {
			_, first, _ := get(t, c, url+"/", map[string]string{"X-Forwarded-For": ip})
			seen[first] = true
			for range 3 {
				if _, body, _ := get(t, c, url+"/", map[string]string{"X-Forwarded-For": ip}); body != first {
					t.Fatalf("client %s: got %q; want %q every time", ip, body, first)
				}
			}
		}
		if len(seen) != 2 {
			t.Errorf("20 clients reached %v; want both nodes", seen)
		}
	})
}

func TestLeastConnThroughProxy(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "slow")
	})
	fast := newBackend(t, "fast", nil)
	defer close(release)
	p := newTestProxy(t, Options{Balance: LeastConn}, slow.upstream(), fast.upstream())
	url, c := front(t, p)

	// Hold one request on "slow"; retry until least_conn lands it there.
	held := make(chan string, 1)
	go func() {
		for range 20 {
			resp, err := c.Get(url + "/hold")
			if err != nil {
				held <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == "slow" {
				held <- "done"
				return
			}
		}
		held <- "never reached the slow node"
	}()
	select {
	case <-entered:
	case msg := <-held:
		t.Fatalf("holding request: %s", msg)
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the slow node")
	}
	for range 10 {
		if _, body, _ := get(t, c, url+"/", nil); body != "fast" {
			t.Fatalf("got %q while slow holds a request; want fast", body)
		}
	}
	release <- struct{}{}
	if msg := <-held; msg != "done" {
		t.Fatalf("holding request: %s", msg)
	}
}
