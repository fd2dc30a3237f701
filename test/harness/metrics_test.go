package harness

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMetricSamples(t *testing.T) {
	page := `# HELP flowgate_certificate_reloads_total Reloads.
# TYPE flowgate_certificate_reloads_total counter
flowgate_certificate_reloads_total{name="/a/tls.crt",result="failure"} 2
flowgate_certificate_reloads_total{name="/a/tls.crt",result="success"} 5 1700000000.000
flowgate_certificate_reloads_total{name="/b/tls.crt",result="success"} 1
flowgate_certificate_reloads_total_created{name="/a/tls.crt",result="success"} 1.7e+09
flowgate_issuer_rotations_total{result="success"} 3
flowgate_request_duration_seconds_bucket{le="0.1"} 4 # {trace_id="a}b"} 0.05 1700000000
flowgate_odd{path="/x} 9",result="success"} 7
flowgate_odd{path="/y",note="quote \" and } inside"} 8
flowgate_up 1
flowgate_inf +Inf
`
	tests := []struct {
		name   string
		family string
		labels []string
		want   []float64
	}{
		{"one series", "flowgate_certificate_reloads_total", []string{`name="/a/tls.crt"`, `result="failure"`}, []float64{2}},
		{"value before a timestamp", "flowgate_certificate_reloads_total", []string{`name="/a/tls.crt"`, `result="success"`}, []float64{5}},
		{"every name, not _created", "flowgate_certificate_reloads_total", []string{`result="success"`}, []float64{5, 1}},
		{"other family", "flowgate_issuer_rotations_total", []string{`result="success"`}, []float64{3}},
		{"value before an exemplar", "flowgate_request_duration_seconds_bucket", []string{`le="0.1"`}, []float64{4}},
		{"brace in a label value", "flowgate_odd", []string{`result="success"`}, []float64{7}},
		{"escaped quote in a label value", "flowgate_odd", []string{`path="/y"`}, []float64{8}},
		{"labels match the label set only", "flowgate_odd", []string{`9`}, []float64{7}},
		{"no labels", "flowgate_up", nil, []float64{1}},
		{"infinity", "flowgate_inf", nil, []float64{math.Inf(1)}},
		{"label not on the page", "flowgate_up", []string{`result="success"`}, nil},
		{"absent", "flowgate_missing", nil, nil},
		{"prefix of a family", "flowgate_issuer", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MetricSamples(page, tt.family, tt.labels...)
			if err != nil {
				t.Fatalf("MetricSamples(%s, %q): %v", tt.family, tt.labels, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MetricSamples(%s, %q) mismatch (-want +got):\n%s", tt.family, tt.labels, diff)
			}
		})
	}
}

func TestMetricSum(t *testing.T) {
	page := `m{result="success",name="a"} 5
m{result="success",name="b"} 1.5
m{result="failure",name="a"} 2
`
	tests := []struct {
		labels []string
		want   float64
	}{
		{[]string{`result="success"`}, 6.5},
		{[]string{`name="a"`}, 7},
		{nil, 8.5},
		{[]string{`result="unknown"`}, 0},
	}
	for _, tt := range tests {
		got, err := MetricSum(page, "m", tt.labels...)
		if err != nil || got != tt.want {
			t.Errorf("MetricSum(m, %q): got %v, %v; want %v, nil", tt.labels, got, err, tt.want)
		}
	}
}

func TestMetricSamplesMalformed(t *testing.T) {
	tests := []struct{ name, page string }{
		{"no value", "m{a=\"1\"}\n"},
		{"no value without labels", "m \n"},
		{"unparsable value", "m{a=\"1\"} one\n"},
		{"unterminated label set", "m{a=\"1\" 2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MetricSamples(tt.page, "m")
			if err == nil || !strings.Contains(err.Error(), "sample") {
				t.Errorf("MetricSamples(%q): got %v, %v; want an error naming the sample", tt.page, got, err)
			}
			if _, err := MetricSum(tt.page, "m"); err == nil {
				t.Errorf("MetricSum(%q): got no error; want one", tt.page)
			}
		})
	}
	// A malformed sample of another family is not name's concern.
	if got, err := MetricSamples("other{a=\"1\"} x\nm 3\n", "m"); err != nil || !cmp.Equal(got, []float64{3}) {
		t.Errorf("MetricSamples beside another family's bad sample: got %v, %v; want [3], nil", got, err)
	}
}
