package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

const (
	// initialBackoff is the wait before the first retry after an error.
	initialBackoff = 250 * time.Millisecond
	// queryTimeoutSlack is added to WaitTime and Consul's own jitter
	// (WaitTime/16) to bound one query, so that a connection that hangs
	// without an error (a dropped route) is noticed.
	queryTimeoutSlack = 10 * time.Second
)

// serviceWatch is the state of the watch of one Consul service. The watch
// goroutine writes it; Run, Status and the metrics read it.
type serviceWatch struct {
	name string

	mu           sync.Mutex
	started      time.Time // when the watch was created; staleness counts from here until the first answer
	answered     bool
	index        uint64
	lastSuccess  time.Time
	lastError    string
	lastErrorAt  time.Time
	errorsInRow  int
	upstreams    []Upstream // the list flowgate uses from this service
	lastNonEmpty []Upstream
	failOpen     bool // upstreams is lastNonEmpty because Consul reports none healthy
	counts       healthCounts
	healthy      int // usable instances in the last answer (before fail open)
	total        int
	invalid      int
	logged       map[string]bool // entry errors already logged, to log each once
}

// watch runs the blocking-query loop of one service until ctx is cancelled.
// It signals changed (without blocking) when the service's list changed or
// the service was answered for the first time.
func (c *Consul) watch(ctx context.Context, w *serviceWatch, changed chan<- struct{}) {
	var (
		index     uint64
		failures  int
		lastStart time.Time
	)
	for {
		if !lastStart.IsZero() {
			minGap := c.opts.MinInterval + time.Duration(jitter()*float64(c.opts.MinInterval/4))
			if !sleepCtx(ctx, minGap-time.Since(lastStart)) {
				return
			}
		}
		lastStart = time.Now()
		entries, meta, err := c.query(ctx, w.name, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Read afresh after an error: a restarted agent or a restored
			// cluster may have a lower index, and a blocking query on the old
			// one would wait the whole WaitTime before showing it.
			index = 0
			failures++
			wait := backoff(failures, c.opts.MaxBackoff, jitter())
			c.recordError(w, err, failures, wait)
			if !sleepCtx(ctx, wait) {
				return
			}
			continue
		}
		if failures > 0 {
			c.log.Info("consul answers again", "service", w.name, "failed_attempts", failures)
			failures = 0
		}
		next, reset := nextIndex(index, meta.LastIndex)
		if reset {
			c.log.Info("consul index went backwards; reading the service afresh",
				"service", w.name, "index", meta.LastIndex, "previous_index", index)
		}
		if meta.LastIndex == index && index != 0 {
			// The wait timed out without a change.
			c.recordSuccess(w, index)
			continue
		}
		index = next
		if c.apply(w, convertEntries(w.name, entries, c.passingOnly), len(entries), meta.LastIndex) {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}

// query runs one blocking query for service, waiting for an index above
// index (0 reads at once).
//
// The Consul API client panics while decoding some malformed answers (a
// check whose "Definition" is null); such an answer is turned into an error
// like any other bad answer, so the watch keeps the last set and retries
// instead of taking flowgate down.
func (c *Consul) query(ctx context.Context, service string, index uint64) (entries []*api.ServiceEntry, meta *api.QueryMeta, err error) {
	defer func() {
		if r := recover(); r != nil {
			entries, meta = nil, nil
			err = fmt.Errorf("consul %s answered for service %q with data that cannot be decoded (%v); check what answers at that address", c.client.address, service, r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, c.opts.WaitTime+c.opts.WaitTime/16+queryTimeoutSlack)
	defer cancel()
	q := &api.QueryOptions{AllowStale: c.allowStale, WaitIndex: index, WaitTime: c.opts.WaitTime}
	tok, err := c.client.currentToken()
	if err != nil {
		c.log.Warn("cannot re-read the consul token file; using the last token", "err", err)
	}
	q.Token = tok
	entries, meta, err = c.client.api.Health().ServiceMultipleTags(service, c.opts.Tags, false, q.WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("querying consul %s for service %q: %w", c.client.address, service, err)
	}
	return entries, meta, nil
}

// recordError notes a failed query: the list stays as it is.
func (c *Consul) recordError(w *serviceWatch, err error, failures int, retry time.Duration) {
	now := c.opts.Now()
	w.mu.Lock()
	w.lastError, w.lastErrorAt, w.errorsInRow = err.Error(), now, failures
	since := now.Sub(w.lastSuccess)
	if !w.answered {
		since = now.Sub(w.started)
	}
	w.mu.Unlock()
	c.metrics.errors.WithLabelValues(w.name).Inc()
	level := c.log.Warn
	if failures > 1 && failures%10 != 0 {
		level = c.log.Debug // a long outage logs its first error and every tenth
	}
	level("consul query failed; keeping the last upstream list", "service", w.name, "err", err,
		"attempt", failures, "retry_in", retry.Round(time.Millisecond), "since_last_success", since.Round(time.Second))
}

// recordSuccess notes an answer that changed nothing.
func (c *Consul) recordSuccess(w *serviceWatch, index uint64) {
	now := c.opts.Now()
	w.mu.Lock()
	w.lastSuccess, w.index, w.errorsInRow = now, index, 0
	w.mu.Unlock()
	c.metrics.lastSuccess.WithLabelValues(w.name).Set(unixSeconds(now))
}

// apply stores a new answer and reports whether the service's list changed
// (or this is its first answer).
func (c *Consul) apply(w *serviceWatch, conv conversion, total int, index uint64) bool {
	now := c.opts.Now()
	w.mu.Lock()
	ups := conv.upstreams
	enteredFailOpen := false
	switch {
	case len(ups) > 0:
		w.lastNonEmpty, w.failOpen = ups, false
	case c.opts.FailOpen && len(w.lastNonEmpty) > 0:
		ups = w.lastNonEmpty
		enteredFailOpen = !w.failOpen
		w.failOpen = true
	default:
		w.failOpen = false
	}
	changed := !w.answered || !Equal(ups, w.upstreams)
	w.answered, w.upstreams, w.index, w.lastSuccess, w.errorsInRow = true, ups, index, now, 0
	w.counts, w.healthy, w.total, w.invalid = conv.counts, len(conv.upstreams), total, len(conv.errs)
	logged := make(map[string]bool, len(conv.errs))
	var fresh []error
	for _, err := range conv.errs {
		msg := err.Error()
		if !w.logged[msg] {
			fresh = append(fresh, err)
		}
		logged[msg] = true
	}
	w.logged = logged
	w.mu.Unlock()

	for _, err := range fresh {
		var ee *EntryError
		if errors.As(err, &ee) {
			c.log.Warn("skipping consul instance", "service", ee.Service, "id", ee.ID, "reason", ee.Reason)
		}
	}
	if enteredFailOpen {
		c.log.Warn("consul reports no healthy instance; keeping the last list (fail open)",
			"service", w.name, "upstreams", len(ups))
	}
	c.metrics.answered(w.name, conv, now, changed)
	return changed
}

// nextIndex returns the WaitIndex for the query that follows an answer with
// index got to a query sent with prev, by Consul's blocking-query rules: an
// index that went backwards (a snapshot restore, a rebuilt cluster) resets to
// 0 so that the next query reads afresh; an answer with index 0 (a Consul
// bug) continues with 1, because 0 would make every query return at once.
func nextIndex(prev, got uint64) (next uint64, reset bool) {
	switch {
	case got < prev:
		return 0, true
	case got == 0:
		return 1, false
	default:
		return got, false
	}
}

// backoff returns the wait before retry number attempt (1 for the first):
// initialBackoff doubled per attempt and capped at limit, with equal jitter,
// that is uniform in [d/2, d) for the capped value d, given rnd in [0, 1).
func backoff(attempt int, limit time.Duration, rnd float64) time.Duration {
	d := min(initialBackoff, limit)
	for i := 1; i < attempt && d < limit; i++ {
		d = min(2*d, limit)
	}
	return d/2 + time.Duration(rnd*float64(d/2))
}

// sleepCtx waits for d or until ctx is cancelled, and reports whether ctx is
// still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
