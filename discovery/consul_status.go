package discovery

import (
	"slices"
	"time"
)

// ConsulStatus is the state of Consul discovery, for the /status endpoint.
type ConsulStatus struct {
	// Ready is true once Consul has answered for every service (see
	// Consul.Ready).
	Ready bool `json:"ready"`
	// Address is the Consul HTTP API in use.
	Address string `json:"address"`
	// Services holds one entry per watched service, in configuration order.
	Services []ConsulServiceStatus `json:"services"`
}

// ConsulServiceStatus is the sync state of one watched Consul service.
type ConsulServiceStatus struct {
	// Service is the Consul service name.
	Service string `json:"service"`
	// Answered is true once Consul has answered for this service.
	Answered bool `json:"answered"`
	// LastSuccess is the time of the last answer; zero before the first.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// SecondsSinceSuccess is the time since LastSuccess, or since the watch
	// started when there was no answer yet (MetricDiscoveryStaleness).
	SecondsSinceSuccess float64 `json:"seconds_since_success"`
	// LastError is the last query error; it stays after a recovery (compare
	// LastErrorTime with LastSuccess). Empty if no query failed.
	LastError string `json:"last_error,omitempty"`
	// LastErrorTime is when LastError happened.
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	// ConsecutiveErrors counts the failed queries since the last answer; 0
	// while Consul answers.
	ConsecutiveErrors int `json:"consecutive_errors"`
	// Index is the Consul index of the last answer.
	Index uint64 `json:"index"`
	// Healthy is the number of usable instances in the last answer (with
	// FailOpen, Upstreams may hold more).
	Healthy int `json:"healthy"`
	// Total is the number of instances Consul reported.
	Total int `json:"total"`
	// Passing, Warning and Critical count the reported instances by
	// aggregated check state (maintenance and unreachable nodes count as
	// critical).
	Passing int `json:"passing"`
	// Warning: see Passing.
	Warning int `json:"warning"`
	// Critical: see Passing.
	Critical int `json:"critical"`
	// Invalid counts the instances skipped because they cannot be an
	// upstream (the log names each).
	Invalid int `json:"invalid"`
	// FailOpen is true while the service's last non-empty list is kept
	// because Consul reports no healthy instance (ConsulOptions.FailOpen).
	FailOpen bool `json:"fail_open"`
	// Upstreams is the list flowgate uses from this service.
	Upstreams []Upstream `json:"upstreams"`
}

// Status returns a snapshot of the discovery state. It is safe to call from
// any goroutine.
func (c *Consul) Status() ConsulStatus {
	st := ConsulStatus{Ready: c.Ready(), Address: c.client.address}
	for _, w := range c.watches {
		s, _ := c.serviceStatus(w.name)
		st.Services = append(st.Services, s)
	}
	return st
}

// serviceStatus returns the status of one service, false if c does not
// watch it.
func (c *Consul) serviceStatus(service string) (ConsulServiceStatus, bool) {
	i := slices.IndexFunc(c.watches, func(w *serviceWatch) bool { return w.name == service })
	if i < 0 {
		return ConsulServiceStatus{}, false
	}
	now := c.opts.Now()
	w := c.watches[i]
	w.mu.Lock()
	defer w.mu.Unlock()
	since := w.lastSuccess
	if !w.answered {
		since = w.started
	}
	return ConsulServiceStatus{
		Service:             w.name,
		Answered:            w.answered,
		LastSuccess:         w.lastSuccess,
		SecondsSinceSuccess: max(now.Sub(since).Seconds(), 0),
		LastError:           w.lastError,
		LastErrorTime:       w.lastErrorAt,
		ConsecutiveErrors:   w.errorsInRow,
		Index:               w.index,
		Healthy:             w.healthy,
		Total:               w.total,
		Passing:             w.counts.Passing,
		Warning:             w.counts.Warning,
		Critical:            w.counts.Critical,
		Invalid:             w.invalid,
		FailOpen:            w.failOpen,
		Upstreams:           slices.Clone(w.upstreams),
	}, true
}
