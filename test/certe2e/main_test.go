package certe2e

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowgate/flowgate/test/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(harness.M(m)) }

// figure logs a measured figure with the "FIGURE:" prefix the README's
// figures are collected from.
func figure(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Logf("FIGURE: "+format, args...)
}

// poll calls f every 50 ms until it returns true or timeout passes, and
// reports whether f returned true.
func poll(timeout time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// percentile returns the p-th percentile (0-100) of ds, nearest rank, or 0
// for none. It sorts a copy.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// metric sums the samples of a metric family on the admin /metrics page
// whose label set contains every one of labels (e.g. `result="failure"`).
func metric(t testing.TB, fg *harness.Flowgate, name string, labels ...string) float64 {
	t.Helper()
	code, body := fg.AdminGet("/metrics")
	if code != http.StatusOK {
		t.Fatalf("admin /metrics: got status %d; want 200", code)
	}
	return sumSamples(body, name, labels...)
}

// sumSamples sums the samples of the family name in a Prometheus text or
// OpenMetrics page whose label set contains every one of labels.
func sumSamples(page, name string, labels ...string) float64 {
	sum := 0.0
	for line := range strings.SplitSeq(page, "\n") {
		var labelSet, rest string
		switch {
		case strings.HasPrefix(line, name+"{"):
			end := strings.LastIndex(line, "}")
			if end < 0 {
				continue
			}
			labelSet, rest = line[len(name)+1:end], line[end+1:]
		case strings.HasPrefix(line, name+" "):
			rest = line[len(name):]
		default:
			continue
		}
		if !containsAll(labelSet, labels) {
			continue
		}
		fields := strings.Fields(rest) // value, then an optional timestamp
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestSumSamples(t *testing.T) {
	page := `# TYPE flowgate_certificate_reloads_total counter
flowgate_certificate_reloads_total{name="/a/tls.crt",result="failure"} 2
flowgate_certificate_reloads_total{name="/a/tls.crt",result="success"} 5 1700000000.000
flowgate_certificate_reloads_total{name="/b/tls.crt",result="success"} 1
flowgate_certificate_reloads_total_created{name="/a/tls.crt",result="success"} 1.7e+09
flowgate_issuer_rotations_total{result="success"} 3
flowgate_up 1
`
	tests := []struct {
		name   string
		family string
		labels []string
		want   float64
	}{
		{"one series", "flowgate_certificate_reloads_total", []string{`name="/a/tls.crt"`, `result="failure"`}, 2},
		{"value before a timestamp", "flowgate_certificate_reloads_total", []string{`name="/a/tls.crt"`, `result="success"`}, 5},
		{"sum over names, not _created", "flowgate_certificate_reloads_total", []string{`result="success"`}, 6},
		{"other family", "flowgate_issuer_rotations_total", []string{`result="success"`}, 3},
		{"no labels", "flowgate_up", nil, 1},
		{"absent", "flowgate_missing", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sumSamples(page, tt.family, tt.labels...); got != tt.want {
				t.Errorf("sumSamples(%s, %q): got %v; want %v", tt.family, tt.labels, got, tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {100, 10}, {0, 1}, {10, 1}, {90, 9}}
	for _, tt := range tests {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("percentile(%v): got %v; want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of none: got %v; want 0", got)
	}
	if ds[0] != 5 {
		t.Errorf("percentile sorted its argument: ds[0] got %v; want 5", ds[0])
	}
}
