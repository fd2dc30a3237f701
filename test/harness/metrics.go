package harness

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// MetricSamples returns, in page order, the values of the samples of the
// metric family name on a Prometheus text or OpenMetrics page whose label
// set contains every one of labels, each written as on the page
// (`result="failure"`). The name matches exactly: name_created or
// name_bucket samples are not name's. A trailing timestamp or exemplar is
// ignored. A sample of name without a parsable value is an error.
func MetricSamples(page, name string, labels ...string) ([]float64, error) {
	var out []float64
	for line := range strings.SplitSeq(page, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		var labelSet string
		if rest[0] == '{' {
			end := labelSetEnd(rest)
			if end < 0 {
				return nil, fmt.Errorf("sample %q: the label set does not end", line)
			}
			labelSet, rest = rest[1:end], rest[end+1:]
		}
		if !containsAll(labelSet, labels) {
			continue
		}
		fields := strings.Fields(rest) // value, then an optional timestamp or exemplar
		if len(fields) == 0 {
			return nil, fmt.Errorf("sample %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("sample %q: %w", line, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// MetricSum returns the sum of MetricSamples(page, name, labels...): 0 when
// no sample matches.
func MetricSum(page, name string, labels ...string) (float64, error) {
	vs, err := MetricSamples(page, name, labels...)
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	return sum, err
}

// labelSetEnd returns the index in s, which starts with "{", of the brace
// that closes the label set, skipping braces inside quoted label values;
// -1 when there is none.
func labelSetEnd(s string) int {
	quoted, escaped := false, false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// MetricSamples fetches the admin /metrics page and returns the values of
// the samples of name whose label set contains every one of labels (see
// the package function MetricSamples). A status other than 200 or a
// malformed sample fails t.
func (f *Flowgate) MetricSamples(t testing.TB, name string, labels ...string) []float64 {
	t.Helper()
	code, body := f.AdminGet("/metrics")
	if code != http.StatusOK {
		t.Fatalf("admin /metrics: got status %d; want 200", code)
	}
	vs, err := MetricSamples(body, name, labels...)
	if err != nil {
		t.Fatalf("admin /metrics: %v", err)
	}
	return vs
}

// Metric fetches the admin /metrics page and returns the sum of the
// samples of name whose label set contains every one of labels, 0 when
// there is none. A status other than 200 or a malformed sample fails t.
func (f *Flowgate) Metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	sum := 0.0
	for _, v := range f.MetricSamples(t, name, labels...) {
		sum += v
	}
	return sum
}
