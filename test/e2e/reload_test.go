package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

func upstreamConfig(addrs ...string) string {
	var b strings.Builder
	b.WriteString("upstreams:\n  static:\n")
	for _, a := range addrs {
		fmt.Fprintf(&b, "    - %s\n", a)
	}
	return b.String()
}

// TestReloadMovesTraffic rewrites the config file to another upstream and
// sends SIGHUP under continuous load: no request may fail, and traffic must
// move. A broken config then keeps the running one serving, and the log
// says why.
func TestReloadMovesTraffic(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t)
	fg := harness.StartFlowgate(t, harness.Options{Config: upstreamConfig(a.Addr)})

	stop := make(chan struct{})
	done := make(chan []result)
	go func() { done <- load(fg.Client, fg.URL("/headers"), 4, 1000000, stop) }()
	time.Sleep(300 * time.Millisecond)
	fg.WriteConfig(upstreamConfig(b.Addr))
	if err := fg.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	reloaded := time.Now()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	results := <-done
	counts, failed := countNodes(results)
	lateA := 0
	for _, r := range results {
		if r.start.After(reloaded) && r.node == "a" {
			lateA++
		}
	}
	t.Logf("SIGHUP under load: %d requests, a=%d b=%d, %d failed, %d sent after the reload went to a", len(results), counts["a"], counts["b"], len(failed), lateA)
	for i, r := range failed {
		if i == 5 {
			break
		}
		t.Errorf("request failed across the reload: status %d, %v", r.status, r.err)
	}
	if counts["a"] == 0 || counts["b"] == 0 {
		t.Errorf("traffic did not move from a to b: %v", counts)
	}
	if lateA > 0 {
		t.Errorf("%d requests sent after the reload completed went to the removed node a", lateA)
	}
	if st := fg.Status(); len(st.Upstreams) == 0 || st.Upstreams[0].Addr != b.Addr || st.Upstreams[0].State != "up" {
		t.Errorf("/status after reload: got upstreams %+v; want %s first and up", st.Upstreams, b.Addr)
	}

	tests := []struct {
		name, config, wantInLog string
	}{
		{"unknown key", upstreamConfig(a.Addr) + "bogus_setting: 1\n", "bogus_setting"},
		{"bad address", upstreamConfig("a.example:notaport"), "upstreams.static[0]"},
		{"missing certificate", "tls:\n  certificates:\n    - cert_file: /nonexistent/flowgate.crt\n      key_file: /nonexistent/flowgate.key\n", "/nonexistent/flowgate.crt"},
		{"not YAML", "upstreams: [\n", "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fg.WriteConfig(tt.config)
			err := fg.Reload()
			if err == nil {
				t.Fatalf("reload of a broken config succeeded; want it rejected")
			}
			if !strings.Contains(err.Error(), tt.wantInLog) {
				t.Errorf("rejection log: got %q; want it to name %q", err, tt.wantInLog)
			}
			counts, failed := countNodes(load(fg.Client, fg.URL("/headers"), 2, 20, nil))
			if len(failed) > 0 || counts["b"] != 20 {
				t.Errorf("after the rejected reload: got %v and %d failures; want all 20 on b", counts, len(failed))
			}
		})
	}
	if got := fg.Metric(t, "flowgate_config_reloads_total", `result="failure"`); got != float64(len(tests)) {
		// An operator alerts on this counter; a typo in the file is the
		// most common failure and must count too.
		t.Errorf("flowgate_config_reloads_total{result=failure}: got %v; want %d (one per rejected SIGHUP, parse errors included)", got, len(tests))
	}

	// A good config after the broken ones applies again.
	fg.WriteConfig(upstreamConfig(a.Addr))
	if err := fg.Reload(); err != nil {
		t.Fatalf("reload after the broken ones: %v", err)
	}
	if r := get(fg.Client, fg.URL("/headers")); r.node != "a" {
		t.Errorf("after a good reload to a: got node %q, status %d; want a", r.node, r.status)
	}
	if err := fg.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := fg.Wait(20 * time.Second); err != nil || code != 0 {
		t.Errorf("exit after SIGTERM: got %d, %v; want 0", code, err)
	}
}
