package main

import (
	"context"
	"slices"
	"sync"
	"time"
)

// loadResult is what one load generator run measured.
type loadResult struct {
	requests int64         // completed requests (or round trips, handshakes)
	errors   int64         // failed requests, bad statuses, socket errors
	bytes    int64         // response bytes read, when the tool reports them
	elapsed  time.Duration // measured window
	p50, p99 time.Duration
	extra    map[string]float64 // scenario-specific counts
	detail   string             // the first error, for the log
}

func (r loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted values
// by the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// closedLoop runs op on workers goroutines, each repeating it until d has
// passed or ctx ends, and collects latencies of successful calls. op returns
// false on failure with a description.
func closedLoop(ctx context.Context, workers int, d time.Duration, op func(ctx context.Context, worker int) (bool, string)) loadResult {
	start := time.Now()
	end := start.Add(d)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	type tally struct {
		lat    []time.Duration
		errors int64
		detail string
	}
	tallies := make([]tally, workers)
	// The end is judged by the clock, not only by ctx.Err(): past the
	// deadline a dial fails at once with "i/o timeout" while the context's
	// timer may not have fired yet on a busy machine, and the loop would
	// count thousands of such failures.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			t := &tallies[w]
			for !over() {
				t0 := time.Now()
				ok, why := op(ctx, w)
				if over() {
					return // cut by the deadline: neither success nor failure
				}
				if !ok {
					t.errors++
					if t.detail == "" {
						t.detail = why
					}
					continue
				}
				t.lat = append(t.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	r := loadResult{elapsed: time.Since(start)}
	var all []time.Duration
	for _, t := range tallies {
		all = append(all, t.lat...)
		r.errors += t.errors
		if r.detail == "" {
			r.detail = t.detail
		}
	}
	slices.Sort(all)
	r.requests = int64(len(all))
	r.p50 = percentile(all, 50)
	r.p99 = percentile(all, 99)
	return r
}
