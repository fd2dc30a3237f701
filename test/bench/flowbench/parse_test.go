package main

import (
	"context"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseWrk(t *testing.T) {
	out := []byte(`Running 2s test @ https://127.0.0.1:1/bytes?n=1024
  1 threads and 64 connections
FLOWBENCH {"requests":40000,"duration_us":2000000,"bytes":45000000,"connect":0,"read":0,"write":0,"status":3,"timeout":1,"p50_us":1500,"p99_us":9000,"tls_reported":39990,"tls_resumed":39000}
`)
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{r.requests, r.elapsed, r.bytes, r.errors, r.p50, r.p99, r.rate(), r.tlsReported, r.tlsResumed}
	want := []any{int64(40000), 2 * time.Second, int64(45000000), int64(4), 1500 * time.Microsecond, 9 * time.Millisecond, 20000.0,
		int64(39990), int64(39000)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseWrk (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.detail, "status 3") {
		t.Errorf("detail: got %q; want the error counts", r.detail)
	}
	if _, err := parseWrk([]byte("unable to connect to 127.0.0.1:1 Connection refused\n")); err == nil {
		t.Error("parseWrk without a summary: got no error; want one")
	}
}

const h2loadOut = `starting benchmark...
Application protocol: h2
finished in 2.00s, 12000.50 req/s, 12.31MB/s
requests: 24001 total, 24001 started, 24001 done, 24000 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 24000 2xx, 0 3xx, 0 4xx, 1 5xx
traffic: 24.62MB (25812345) total, 290.04KB (297000) headers (space savings 90.00%), 23.44MB (24576000) data
`

func TestParseH2load(t *testing.T) {
	r, err := parseH2load([]byte(h2loadOut))
	if err != nil {
		t.Fatal(err)
	}
	got := []any{r.elapsed, r.requests, r.errors, r.bytes}
	want := []any{2 * time.Second, int64(24000), int64(2), int64(25812345)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseH2load (-want +got):\n%s", diff)
	}
	if _, err := parseH2load([]byte(strings.Replace(h2loadOut, "Application protocol: h2", "Application protocol: http/1.1", 1))); err == nil {
		t.Error("parseH2load without h2: got no error; want one")
	}
	lat, err := parseH2loadLog([]byte("1\t200\t300\n2\t200\t100\n3\t502\t5\n4\t200\t200\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]time.Duration{100 * time.Microsecond, 200 * time.Microsecond, 300 * time.Microsecond}, lat); diff != "" {
		t.Errorf("parseH2loadLog: 2xx latencies sorted (-want +got):\n%s", diff)
	}
}

func TestParseProc(t *testing.T) {
	st, err := parseStat([]byte("1234 (my (odd) name) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0 5 100 200\n"))
	if err != nil {
		t.Fatal(err)
	}
	if st != (stat{ppid: 77, utime: 250, stime: 31}) {
		t.Errorf("parseStat: got %+v; want ppid 77, utime 250, stime 31", st)
	}
	if _, err := parseStat([]byte("garbage")); err == nil {
		t.Error("parseStat(garbage): got no error; want one")
	}
	status := []byte("Name:\tnginx\nVmHWM:\t   25000 kB\nVmRSS:\t   24000 kB\n")
	for field, want := range map[string]int64{"VmHWM": 25000, "VmRSS": 24000} {
		got, err := parseStatusKB(status, field)
		if err != nil || got != want {
			t.Errorf("parseStatusKB %s: got %d, %v; want %d", field, got, err, want)
		}
	}
	if _, err := parseStatusKB(status, "VmSwap"); err == nil {
		t.Error("parseStatusKB of a missing field: got no error; want one")
	}
}

func TestPercentileAndMedian(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0.1, 1}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("percentile(1..100, %v): got %v; want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(empty): got %v; want 0", got)
	}
	if got := median([]float64{5, 1, 3}); got != 3 {
		t.Errorf("median(5,1,3): got %v; want 3", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median(4,1,3,2): got %v; want 2.5", got)
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(empty): got %v; want NaN", got)
	}
}

func TestParseHandshakes(t *testing.T) {
	body := `# HELP flowgate_tls_handshakes_total TLS handshakes.
# TYPE flowgate_tls_handshakes_total counter
flowgate_tls_handshakes_total{resumed="false"} 10
flowgate_tls_handshakes_total{resumed="true"} 90
flowgate_tls_handshakes_totally_different 5
`
	h, ok := parseHandshakes(strings.NewReader(body))
	if !ok || h != (handshakes{total: 100, resumed: 90}) {
		t.Errorf("parseHandshakes: got %+v, %v; want total 100, resumed 90", h, ok)
	}
	if _, ok := parseHandshakes(strings.NewReader("go_goroutines 12\n")); ok {
		t.Error("parseHandshakes without the metric: got ok; want not found")
	}
}

func TestOrderRotates(t *testing.T) {
	peers := []*peer{{name: "a"}, {name: "b"}, {name: "c"}, {name: "d"}}
	first := map[string]int{}
	for i := range 4 {
		o := order(peers, i)
		if len(o) != 4 {
			t.Fatalf("order(run %d): got %d peers; want 4", i, len(o))
		}
		first[o[0].name]++
	}
	if len(first) != 4 {
		t.Errorf("first peer over 4 runs: got %v; want each peer once", first)
	}
}

func TestReportRatiosAndTargets(t *testing.T) {
	res := []result{
		{Scenario: "h1-keepalive-1k", Peer: "flowgate", Value: 30000, P99us: 1100, CoreUse: 0.99},
		{Scenario: "h1-keepalive-1k", Peer: "nginx", Value: 40000, P99us: 1000, CoreUse: 0.99},
		{Scenario: "h1-keepalive-1k", Peer: "caddy", Value: 20000, P99us: 3000, CoreUse: 0.99},
		{Scenario: "h1-keepalive-1k", Peer: "caddy", Run: 1, Error: "boom"},
		{Scenario: "tls-full", Peer: "flowgate", Value: 900, CoreUse: 0.99},
		{Scenario: "tls-full", Peer: "nginx", Value: 1000, CoreUse: 0.98},
		{Scenario: "ws-idle", Peer: "flowgate", Value: 20},
		{Scenario: "ws-idle", Peer: "caddy", Value: 80},
	}
	rep := buildReport(map[string]any{"runs": 1}, res, nil)
	ka := rep.scenario("h1-keepalive-1k")
	if ka == nil {
		t.Fatal("no h1-keepalive-1k in the report")
	}
	if got := ka.Ratios["nginx"]; got != 0.75 {
		t.Errorf("flowgate/nginx: got %v; want 0.75", got)
	}
	if c := ka.Peers["caddy"]; c.Runs != 1 || c.Failed != 1 {
		t.Errorf("caddy runs: got %d ok, %d failed; want 1 and 1", c.Runs, c.Failed)
	}
	met := map[string]string{}
	for _, tg := range rep.Targets {
		met[tg.Name] = verdict(tg)
	}
	want := map[string]string{
		"keep-alive HTTPS req/s, flowgate/nginx":             "no",
		"keep-alive HTTPS p99 latency, flowgate/nginx":       "yes",
		"full TLS handshakes/s, flowgate/nginx":              "yes",
		"h1-keepalive-1k vs Caddy, flowgate/caddy":           "yes",
		"ws-idle vs Caddy, flowgate/caddy (lower is better)": "yes",
		"idle WebSocket memory, KiB per connection":          "yes",
	}
	if diff := cmp.Diff(want, met); diff != "" {
		t.Errorf("targets met (-want +got):\n%s", diff)
	}
	md := rep.markdown()
	for _, s := range []string{"| flowgate/nginx |", "0.75", "Targets"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

func verdict(t target) string {
	switch {
	case t.Met && t.LoadBound:
		return "met and load-bound"
	case t.Met:
		return "yes"
	case t.LoadBound:
		return "load-bound"
	}
	return "no"
}

// TestTargetsLoadBound: a throughput ratio decides a target only when
// the run whose proxy core was partly idle cannot change the answer.
func TestTargetsLoadBound(t *testing.T) {
	const busy, idle = 0.99, 0.90
	for _, tc := range []struct {
		name           string
		fgRate, fgCore float64
		pRate, pCore   float64
		want           string
	}{
		{"both proxy-bound, met", 1000, busy, 1000, busy, "yes"},
		{"both proxy-bound, missed", 700, busy, 1000, busy, "no"},
		{"both load-bound, ratio 1", 1000, idle, 1000, idle, "load-bound"},
		{"flowgate load-bound, met all the same", 1000, idle, 1000, busy, "yes"},
		{"flowgate load-bound, missed", 700, idle, 1000, busy, "load-bound"},
		{"peer load-bound, missed all the same", 700, busy, 1000, idle, "no"},
		{"peer load-bound, met", 1000, busy, 1000, idle, "load-bound"},
		{"shown as 96%", 1000, busy, 1000, 0.9649, "load-bound"},
		{"shown as 97%", 1000, busy, 1000, 0.9651, "yes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res []result
			for _, id := range []string{"tls-full", "ws-echo"} {
				res = append(res,
					result{Scenario: id, Peer: "flowgate", Value: tc.fgRate, CoreUse: tc.fgCore},
					result{Scenario: id, Peer: "nginx", Value: tc.pRate, CoreUse: tc.pCore},
					result{Scenario: id, Peer: "caddy", Value: tc.pRate / 1.2, CoreUse: tc.pCore})
			}
			rep := buildReport(map[string]any{"runs": 1}, res, nil)
			got := map[string]string{}
			for _, tg := range rep.Targets {
				got[tg.Name] = verdict(tg)
			}
			want := map[string]string{
				"full TLS handshakes/s, flowgate/nginx": tc.want,
				"tls-full vs Caddy, flowgate/caddy":     tc.want,
				"ws-echo vs Caddy, flowgate/caddy":      tc.want,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
			md := rep.markdown()
			if wantCell := "| " + tc.want + " |"; !strings.Contains(md, wantCell) {
				t.Errorf("markdown lacks %q:\n%s", wantCell, md)
			}
		})
	}
}

func TestCheckResumed(t *testing.T) {
	for _, tc := range []struct {
		name              string
		requests          int64
		reported, resumed float64
		wantErr           bool
	}{
		{"all resumed", 1000, 1000, 995, false},
		{"metric counts a few more handshakes", 1000, 1016, 1010, false},
		{"90 percent", 1000, 1000, 900, false},
		{"too few resumed", 1000, 1000, 899, true},
		{"no server count", 1000, 0, 0, true},
		{"server stopped reporting", 1000, 500, 500, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := loadResult{requests: tc.requests, extra: map[string]float64{"server_reported": tc.reported, "server_resumed": tc.resumed}}
			if err := checkResumed(r); (err != nil) != tc.wantErr {
				t.Errorf("checkResumed(%d requests, %v reported, %v resumed): got %v; want error %v",
					tc.requests, tc.reported, tc.resumed, err, tc.wantErr)
			}
		})
	}
}

// TestClosedLoopIgnoresFailuresPastTheEnd: an operation that fails at once
// once the deadline has passed (as a dial does) must not be counted, even
// before the context's own timer has marked it done.
func TestClosedLoopIgnoresFailuresPastTheEnd(t *testing.T) {
	r := closedLoop(context.Background(), 4, 50*time.Millisecond, func(ctx context.Context, _ int) (bool, string) {
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return false, "i/o timeout"
		}
		time.Sleep(time.Millisecond)
		return true, ""
	})
	if r.errors != 0 || r.requests == 0 {
		t.Errorf("closedLoop: got %d requests, %d errors (%s); want some requests and no errors", r.requests, r.errors, r.detail)
	}
	if r.elapsed < 50*time.Millisecond {
		t.Errorf("elapsed: got %v; want at least the 50ms asked for", r.elapsed)
	}
}

// Same-round ratios pair a peer's runs with flowgate's by round, skip a
// round either failed, and take the median; the ratio of medians, which
// the targets use, stays as it was.
func TestReportSameRoundRatios(t *testing.T) {
	var res []result
	// The machine flips between speeds from run to run: flowgate's last
	// runs caught slow moments that nginx's, seconds apart, did not.
	fg := []float64{62000, 61000, 56000, 55000, 54000}
	ng := []float64{60000, 61000, 57000, 55000, 60000}
	for run := range fg {
		res = append(res,
			result{Scenario: "h1-keepalive-1k", Peer: "flowgate", Run: run, Value: fg[run], CPUPerReqUs: 15, CoreUse: 0.99},
			result{Scenario: "h1-keepalive-1k", Peer: "nginx", Run: run, Value: ng[run], CPUPerReqUs: 16, CoreUse: 0.99})
	}
	res = append(res,
		result{Scenario: "h1-keepalive-1k", Peer: "caddy", Run: 0, Value: 20000, CoreUse: 0.99},
		result{Scenario: "h1-keepalive-1k", Peer: "caddy", Run: 1, Error: "boom"},
		result{Scenario: "h1-keepalive-1k", Peer: "caddy", Run: 2, Value: 10000, CoreUse: 0.99})
	rep := buildReport(map[string]any{"runs": 5}, res, nil)
	ka := rep.scenario("h1-keepalive-1k")
	if got := ka.Ratios["nginx"]; math.Abs(got-56000.0/60000) > 1e-9 {
		t.Errorf("ratio of medians flowgate/nginx: got %v; want %v", got, 56000.0/60000)
	}
	same := ka.SameRound["nginx"]
	if same.Rounds != 5 || math.Abs(same.Value-1) > 1e-9 || math.Abs(same.CPU-15.0/16) > 1e-9 {
		t.Errorf("same-round flowgate/nginx: got %+v; want 5 rounds, 1, %v", same, 15.0/16)
	}
	cd := ka.SameRound["caddy"]
	if want := median([]float64{62000.0 / 20000, 56000.0 / 10000}); cd.Rounds != 2 || math.Abs(cd.Value-want) > 1e-9 || cd.CPU != 0 {
		t.Errorf("same-round flowgate/caddy: got %+v; want 2 rounds, %v, no CPU ratio", cd, want)
	}
	if md := rep.markdown(); !strings.Contains(md, "| 1.00 · 0.94 |") {
		t.Errorf("markdown lacks the same-round row:\n%s", md)
	}
}

// TestFlowgateEnv: --flowgate-env reaches flowgate's environment alone,
// refuses what is not KEY=VALUE and a GOMAXPROCS other than the pinning's,
// and a report says that flowgate did not run on its defaults.
func TestFlowgateEnv(t *testing.T) {
	base := []string{"--flowgate", "fg", "--cert", "c.pem", "--key", "k.pem"}
	c, err := parseBenchFlags(append(base, "--flowgate-env", "GOGC=off", "--flowgate-env", "GODEBUG=gctrace=1"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GOGC=off", "GODEBUG=gctrace=1"}
	if diff := cmp.Diff(want, c.flowgateEnv); diff != "" {
		t.Errorf("flowgateEnv (-want +got):\n%s", diff)
	}
	env := &peerEnv{dir: t.TempDir(), flowgateEnv: c.flowgateEnv}
	for _, name := range []string{"flowgate", "nginx"} {
		got := (&peer{name: name, env: env}).environ()
		has := slices.Contains(got, "GOGC=off") && slices.Contains(got, "GODEBUG=gctrace=1")
		if has != (name == "flowgate") || !slices.Contains(got, "GOMAXPROCS=1") {
			t.Errorf("%s's environment: %q", name, got)
		}
	}
	for _, bad := range []string{"GOGC", "=off", "GOMAXPROCS=2", "GO GC=1"} {
		if _, err := parseBenchFlags(append(base, "--flowgate-env", bad), io.Discard); err == nil {
			t.Errorf("--flowgate-env %q: got no error; want one", bad)
		}
	}
	rep := buildReport(map[string]any{"runs": 1, "flowgate_env": want},
		[]result{{Scenario: "h1-keepalive-1k", Peer: "flowgate", Value: 1}}, nil)
	if md := rep.markdown(); !strings.Contains(md, "GOGC=off GODEBUG=gctrace=1 added to its environment") {
		t.Errorf("markdown does not say flowgate ran with another environment:\n%s", md)
	}
}
