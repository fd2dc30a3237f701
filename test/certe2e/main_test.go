package certe2e

import (
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowgate/flowgate/test/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(harness.M(m)) }

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
