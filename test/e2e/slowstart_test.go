package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestSlowStartAfterReload: a node added by a reload takes a small part
// of the requests at first (a tenth of its half), shows its share in
// /status, and its full half once upstreams.slow_start is over.
func TestSlowStartAfterReload(t *testing.T) {
	t.Parallel()
	n1 := harness.StartStub(t, "n1")
	n2 := harness.StartStub(t, "n2")
	const ramp = 3 * time.Second
	config := func(nodes ...string) string {
		c := fmt.Sprintf("upstreams:\n  slow_start: %v\n  static:\n", ramp)
		for _, n := range nodes {
			c += "    - " + n + "\n"
		}
		return c
	}
	fg := harness.StartFlowgate(t, harness.Options{Config: config(n1.Addr)})
	fg.WriteConfig(config(n1.Addr, n2.Addr))
	if err := fg.Reload(); err != nil {
		t.Fatal(err)
	}
	joined := time.Now()
	count := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			resp, _ := fg.Get("/headers")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got[resp.Header.Get("X-Node")]++
		}
		return got
	}
	var share float64
	for _, u := range fg.Status().Upstreams {
		if u.Addr == n2.Addr {
			share = u.SlowStartShare
		}
	}
	if share <= 0 || share >= 0.6 {
		t.Errorf("/status right after the reload: n2's slow_start_share %v; want a small part", share)
	}
	early := count(200)
	elapsed := time.Since(joined)
	// Over the first requests n2's share rose from 0.1 to at most
	// elapsed/ramp; its expected part is half of that or less.
	limit := 200 * (0.5*min(1, elapsed.Seconds()/ramp.Seconds()) + 0.1)
	harness.Figure(t, "slow start: n2 took %d of 200 requests in the first %v after it joined", early["n2"], elapsed.Round(time.Millisecond))
	if float64(early["n2"]) > limit || early["n1"]+early["n2"] != 200 {
		t.Errorf("in the first %v after n2 joined: %v; want n2 at %.0f or fewer", elapsed, early, limit)
	}
	time.Sleep(time.Until(joined.Add(ramp + 200*time.Millisecond)))
	late := count(200)
	if late["n2"] < 70 || late["n1"] < 70 {
		t.Errorf("after the slow start: %v; want about 100 each", late)
	}
	for _, u := range fg.Status().Upstreams {
		if u.SlowStartShare != 0 {
			t.Errorf("/status after the slow start: %s slow_start_share %v; want none", u.Addr, u.SlowStartShare)
		}
	}
}
