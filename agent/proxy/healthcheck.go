package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// HealthCheck configures active health checks: every Interval each
// upstream in the set is sent GET Path, and one that fails Fails checks in
// a row takes no requests until it passes Passes in a row. A check passes
// on a 2xx or 3xx answer within Timeout. Passive health (MaxFails) works
// beside it: either takes a node out.
//
// When every upstream in the set fails its checks, they are ignored, and
// the nodes take requests as if unchecked (Envoy's panic mode): a check
// path that every node answers 404, or a check that cannot reach nodes the
// proxy can, must not turn away every request.
type HealthCheck struct {
	// Path is the request path, such as /actuator/health; "" disables
	// active health checks.
	Path string
	// Interval between checks of a node; 0 means 5s.
	Interval time.Duration
	// Timeout bounds one check, answer included; 0 means 2s.
	Timeout time.Duration
	// Fails is the checks in a row that take a node out; 0 means 2.
	Fails int
	// Passes is the checks in a row that bring it back; 0 means 2.
	Passes int
}

func (h HealthCheck) withDefaults() HealthCheck {
	if h.Interval <= 0 {
		h.Interval = 5 * time.Second
	}
	if h.Timeout <= 0 {
		h.Timeout = 2 * time.Second
	}
	if h.Fails <= 0 {
		h.Fails = 2
	}
	if h.Passes <= 0 {
		h.Passes = 2
	}
	return h
}

// checkUserAgent is the User-Agent of health checks, so that a node's
// access log can tell them apart.
const checkUserAgent = "flowgate-health-check"

// checkState is an upstream's active-health state, under upstream.mu.
type checkState struct {
	failing bool   // it failed Fails checks in a row and has not passed Passes since
	streak  int    // checks in a row with the same outcome, against failing's threshold
	last    string // the last failure: the status or the error
}

// record counts one check and reports whether the node's state flipped.
func (s *checkState) record(err error, h HealthCheck) (flipped bool) {
	passed := err == nil
	if !passed {
		s.last = err.Error()
	}
	if passed != s.failing { // the outcome agrees with the state
		s.streak = 0
		return false
	}
	s.streak++
	need := h.Fails
	if s.failing {
		need = h.Passes
	}
	if s.streak < need {
		return false
	}
	s.failing, s.streak = !s.failing, 0
	return true
}

// startCheckerLocked starts the health-check loop when o asks for checks
// and it is not running. Under p.mu.
func (p *Proxy) startCheckerLocked(o *Options) {
	if o.HealthCheck.Path == "" || p.checkDone != nil || p.closed {
		return
	}
	p.checkDone = make(chan struct{})
	go p.checkLoop(p.checkDone)
}

// checkLoop checks every upstream in the set each interval until the proxy
// closes or checks are turned off (SetOptions). The options are read
// afresh each round; new ones start a round at once.
func (p *Proxy) checkLoop(done chan struct{}) {
	defer close(done)
	for {
		o := p.options()
		h := o.HealthCheck.withDefaults()
		if o.HealthCheck.Path == "" {
			p.mu.Lock()
			p.checkDone = nil
			p.clearChecksLocked()
			p.mu.Unlock()
			return
		}
		p.checkRound(o, h)
		t := time.NewTimer(h.Interval)
		select {
		case <-p.checkCtx.Done():
			t.Stop()
			return
		case <-p.checkWake:
			t.Stop()
		case <-t.C:
		}
	}
}

// checkRound checks every upstream in the set at once and applies the
// outcome.
func (p *Proxy) checkRound(o *Options, h HealthCheck) {
	set := p.set.Load()
	var wg sync.WaitGroup
	for _, u := range set.list {
		wg.Go(func() {
			err := p.checkOne(u, o.HealthCheck.Path, h.Timeout)
			if p.checkCtx.Err() != nil {
				return // closing: the check was cut, not failed
			}
			u.metrics.checked(err)
			u.mu.Lock()
			flipped := u.check.record(err, h)
			failing, last := u.check.failing, u.check.last
			u.mu.Unlock()
			switch {
			case flipped && failing:
				o.Logger.Warn("upstream failed its health checks; it takes no requests until it passes again",
					"upstream", u.key, "path", o.HealthCheck.Path, "checks", h.Fails, "err", last)
			case flipped:
				o.Logger.Info("upstream passed its health checks; it takes requests again",
					"upstream", u.key, "checks", h.Passes)
			}
		})
	}
	wg.Wait()
	p.applyChecks(set, o, h)
}

// applyChecks takes the nodes that fail their checks out of the set, unless
// every one does: then none is (see HealthCheck).
func (p *Proxy) applyChecks(set *upstreamSet, o *Options, h HealthCheck) {
	failing := 0
	for _, u := range set.list {
		u.mu.Lock()
		if u.check.failing {
			failing++
		}
		u.mu.Unlock()
	}
	ignore := failing > 0 && failing == len(set.list)
	p.mu.Lock()
	changed := ignore != p.checksIgnored
	p.checksIgnored = ignore
	p.mu.Unlock()
	if changed {
		if ignore {
			o.Logger.Error("every upstream fails its health checks; ignoring the checks until one passes (is upstreams.health_check.path right?)",
				"path", o.HealthCheck.Path, "upstreams", len(set.list))
		} else {
			o.Logger.Info("an upstream passes its health checks again; nodes that fail them take no requests")
		}
	}
	now := p.now()
	for _, u := range set.list {
		u.mu.Lock()
		down := u.check.failing && !ignore
		if u.checkDown && !u.check.failing {
			// Passing again: a slow start, if any. Not when it is merely
			// let back in because every node fails.
			u.warmFrom(now)
		}
		u.checkDown = down
		u.checkWait = h.Interval
		u.mu.Unlock()
	}
}

// clearChecksLocked forgets every upstream's check state (checks were
// turned off). Under p.mu.
func (p *Proxy) clearChecksLocked() {
	now := p.now()
	for _, u := range p.known {
		u.mu.Lock()
		if u.checkDown {
			u.warmFrom(now) // back with the checks off: a slow start, if any
		}
		u.check, u.checkDown = checkState{}, false
		u.mu.Unlock()
	}
	p.checksIgnored = false
}

// checkOne sends one health check to u: nil on a 2xx or 3xx answer.
func (p *Proxy) checkOne(u *upstream, path string, timeout time.Duration) error {
	if u.transport == nil {
		return fmt.Errorf("no transport") // upstreams built by hand in tests
	}
	ctx, cancel := context.WithTimeout(p.checkCtx, timeout)
	defer cancel()
	scheme := "http"
	if u.up.TLS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+u.up.Addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", checkUserAgent)
	resp, err := u.transport.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no answer within %v", timeout)
		}
		return err
	}
	// Read a little of the body so that the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
