package harness

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestPoll(t *testing.T) {
	tests := []struct {
		name      string
		trueAt    int // the call of f that returns true; 0 for never
		interval  time.Duration
		want      bool
		wantCalls int
		wantTook  time.Duration
	}{
		{name: "at once", trueAt: 1, want: true, wantCalls: 1, wantTook: 0},
		{name: "third call", trueAt: 3, want: true, wantCalls: 3, wantTook: 100 * time.Millisecond},
		// 0, 50, …, 1000 ms: the call at 1000 ms ends at the deadline, not
		// after it; the one at 1050 ms is the last.
		{name: "never", want: false, wantCalls: 22, wantTook: 1050 * time.Millisecond},
		{name: "never, every 20 ms", interval: 20 * time.Millisecond, want: false, wantCalls: 52, wantTook: 1020 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				calls := 0
				f := func() bool {
					calls++
					return calls == tt.trueAt
				}
				start := time.Now()
				var got bool
				if tt.interval == 0 {
					got = Poll(time.Second, f)
				} else {
					got = PollEvery(time.Second, tt.interval, f)
				}
				took := time.Since(start)
				if got != tt.want || calls != tt.wantCalls || took != tt.wantTook {
					t.Errorf("got %v after %d calls in %v; want %v after %d calls in %v", got, calls, took, tt.want, tt.wantCalls, tt.wantTook)
				}
			})
		})
	}
}
