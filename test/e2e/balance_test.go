package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// TestRoundRobin sends 1,000 requests over two nodes and wants each node to
// get half of them, within 5 %.
func TestRoundRobin(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	fg := harness.StartFlowgate(t, harness.Options{Upstreams: []string{a.Addr, b.Addr}})
	const n = 1000
	start := time.Now()
	results := load(fg.Client, fg.URL("/bytes?n=64"), 8, n, nil)
	elapsed := time.Since(start)
	counts, failed := countNodes(results)
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed; first: status %d, %v", len(failed), n, failed[0].status, failed[0].err)
	}
	t.Logf("round robin over 2 nodes: a=%d b=%d of %d (%.0f req/s over HTTP/2, 8 workers)", counts["a"], counts["b"], n, n/elapsed.Seconds())
	for _, node := range []string{"a", "b"} {
		if got := counts[node]; got < n/2*95/100 || got > n/2*105/100 {
			t.Errorf("node %s: got %d requests; want %d ± 5 %%", node, got, n/2)
		}
	}
}

// TestIPHash checks that ip_hash pins each client to one node and still
// spreads clients over both. Clients are told apart by X-Forwarded-For,
// which flowgate believes because the peer is a trusted proxy.
func TestIPHash(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	fg := harness.StartFlowgate(t, harness.Options{
		Args:      []string{"--balance", "ip_hash", "--trusted-proxy", "127.0.0.1/32"},
		Upstreams: []string{a.Addr, b.Addr},
	})
	const clients, perClient = 40, 5
	perNode := make(map[string]int)
	for i := range clients {
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		var first string
		for j := range perClient {
			req, _ := http.NewRequest(http.MethodGet, fg.URL("/headers"), nil)
			req.Header.Set("X-Forwarded-For", ip)
			r := do(t, fg.Client, req)
			if j == 0 {
				first = r
				perNode[r]++
			} else if r != first {
				t.Errorf("client %s: request %d went to node %q; want %q like its first", ip, j, r, first)
			}
		}
	}
	t.Logf("ip_hash: %d clients spread a=%d b=%d", clients, perNode["a"], perNode["b"])
	if perNode["a"] == 0 || perNode["b"] == 0 {
		t.Errorf("ip_hash put all %d clients on one node: %v", clients, perNode)
	}
	// Without a trusted X-Forwarded-For, the client is the loopback peer:
	// one node for all its requests.
	direct := harness.StartFlowgate(t, harness.Options{Args: []string{"--balance", "ip_hash"}, Upstreams: []string{a.Addr, b.Addr}})
	counts, failed := countNodes(load(direct.Client, direct.URL("/headers"), 4, 100, nil))
	if len(failed) > 0 || len(counts) != 1 {
		t.Errorf("ip_hash, one client: got %v and %d failures; want all 100 on one node", counts, len(failed))
	}
}

// do sends req and returns the X-Node of a 200 answer; anything else fails
// the test.
func do(t *testing.T, c *http.Client, req *http.Request) string {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: got status %d; want 200", req.Method, req.URL, resp.StatusCode)
	}
	return resp.Header.Get("X-Node")
}

// TestFailover kills one node under load (no GET may fail), then the other
// (503 with Retry-After), then brings one back (served again).
func TestFailover(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	fg := harness.StartFlowgate(t, harness.Options{
		Config:    "upstreams:\n  max_fails: 1\n  fail_timeout: 1s\n",
		Upstreams: []string{a.Addr, b.Addr},
	})

	// Slow-ish requests, so that some are in flight on b when it dies.
	stop := make(chan struct{})
	done := make(chan []result)
	go func() { done <- load(fg.Client, fg.URL("/slow?d=20ms"), 8, 100000, stop) }()
	time.Sleep(500 * time.Millisecond)
	b.Kill()
	killed := time.Now()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	results := <-done
	counts, failed := countNodes(results)
	after := 0
	for _, r := range results {
		if r.start.After(killed) && r.node == "b" {
			t.Errorf("a request sent %v after b was killed was answered by b", r.start.Sub(killed))
		}
		if r.start.After(killed) {
			after++
		}
	}
	retries := fg.Metric(t, "flowgate_upstream_retries_total")
	t.Logf("node b killed under load: %d GETs (a=%d b=%d), %d after the kill, %d failed, %.0f retried on a", len(results), counts["a"], counts["b"], after, len(failed), retries)
	for i, r := range failed {
		if i == 5 {
			break
		}
		t.Errorf("GET failed while one node remained: status %d, %v", r.status, r.err)
	}
	if counts["b"] == 0 || after == 0 {
		t.Fatalf("the load did not span the kill: %v, %d after it", counts, after)
	}

	// A POST that finds b dead, once b's ejection (fail_timeout 1s) is
	// over, goes to a with its body: nothing of it went out. Round robin
	// gives b one of the first two.
	time.Sleep(1100 * time.Millisecond)
	before := fg.Metric(t, "flowgate_upstream_retries_total")
	for i := range 4 {
		sent := fmt.Sprintf(`{"taskId":"%d","action":"complete"}`, i)
		resp, err := fg.Client.Post(fg.URL("/echo"), "application/json", strings.NewReader(sent))
		if err != nil {
			t.Fatalf("POST %d with b dead: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Node") != "a" || string(got) != sent {
			t.Errorf("POST %d with b dead: got %d from %q, %q; want 200 from a with the body echoed", i, resp.StatusCode, resp.Header.Get("X-Node"), got)
		}
	}
	if retried := fg.Metric(t, "flowgate_upstream_retries_total") - before; retried < 1 {
		t.Errorf("4 POSTs with b dead and back in the set: %.0f retried; want b's sent on to a", retried)
	} else {
		t.Logf("4 POSTs with b dead and back in the set: all answered by a, %.0f retried after a refused connection", retried)
	}

	a.Kill()
	resp, body := fg.Get("/headers")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("both nodes down: got status %d; want 503\n%s", resp.StatusCode, body)
	}
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 60 {
		t.Errorf("both nodes down: Retry-After %q; want 1 to 60 seconds", resp.Header.Get("Retry-After"))
	}
	if code, body := fg.AdminGet("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with both nodes down: got %d; want 503\n%s", code, body)
	}

	a.Restart()
	back := time.Now()
	var last result
	if !harness.Poll(10*time.Second, func() bool {
		last = get(fg.Client, fg.URL("/headers"))
		return last.status == http.StatusOK && last.node == "a"
	}) {
		t.Fatalf("node a back: got status %d from %q, %v; want 200 from a", last.status, last.node, last.err)
	}
	t.Logf("node a served again %v after its restart", time.Since(back).Round(time.Millisecond))
}
