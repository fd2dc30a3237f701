package discovery

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
)

// Consul is a Discoverer that watches the healthy instances of one or more
// Consul services with blocking queries and sends their merged list.
//
// Each service has its own goroutine and blocking query on
// /v1/health/service/<name>. Errors never clear the list and never stop the
// watch: the last list stays in force, the error is logged, counted and shown
// by Status, and the query is retried with capped exponential backoff.
//
// The first Update is sent once every service has been answered; until then
// Ready reports false and the caller keeps its fallback (static) upstreams.
type Consul struct {
	opts        ConsulOptions
	passingOnly bool
	allowStale  bool
	client      *consulClient
	watches     []*serviceWatch
	metrics     *consulMetrics
	log         *slog.Logger

	ready   atomic.Bool
	running atomic.Bool
}

var _ Discoverer = (*Consul)(nil)

// NewConsul validates opts and builds the Consul client. It reads the token
// file and TLS files now, so that a mistake fails at start, but does not
// contact Consul: Run does, and keeps retrying until Consul answers.
func NewConsul(opts ConsulOptions) (*Consul, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.Services = slices.Clone(opts.Services)
	opts.Tags = slices.Clone(opts.Tags)
	client, err := newConsulClient(opts.ConsulClientOptions)
	if err != nil {
		return nil, err
	}
	m, err := newConsulMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Consul{
		opts:        opts,
		passingOnly: boolOr(opts.PassingOnly, true),
		allowStale:  boolOr(opts.AllowStale, true),
		client:      client,
		metrics:     m,
		log:         opts.Logger.With("discovery", "consul"),
	}
	now := opts.Now()
	for _, s := range opts.Services {
		c.watches = append(c.watches, &serviceWatch{name: s, started: now})
		m.init(s)
	}
	m.attach(c)
	return c, nil
}

// Ready reports whether Consul has answered for every service at least once,
// that is whether the Consul list is known. It stays true afterwards, also
// while Consul is unreachable (the last list stays in force).
func (c *Consul) Ready() bool { return c.ready.Load() }

// Run watches the services and sends an Update whenever the merged list
// changes, until ctx is cancelled. It never closes up. Run must not be called
// again while it runs; a second concurrent call logs an error and returns.
func (c *Consul) Run(ctx context.Context, up chan<- Update) {
	if !c.running.CompareAndSwap(false, true) {
		c.log.Error("consul discovery is already running; ignoring the second Run")
		return
	}
	defer c.running.Store(false)
	defer c.client.closeIdle()
	c.metrics.attach(c)
	defer c.metrics.detach(c)

	ctx, cancel := context.WithCancel(ctx)
	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for _, w := range c.watches {
		wg.Go(func() { c.watch(ctx, w, changed) })
	}
	defer wg.Wait() // runs after cancel below: defers are last in, first out
	defer cancel()

	c.log.Info("watching consul", "address", c.client.address, "services", c.opts.Services,
		"tags", c.opts.Tags, "passing_only", c.passingOnly, "fail_open", c.opts.FailOpen)
	var last []Upstream
	sent := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		list, ok := c.merged()
		if !ok {
			continue
		}
		c.ready.Store(true)
		if sent && Equal(list, last) {
			continue
		}
		select {
		case up <- Update{Source: "consul", Upstreams: list}:
		case <-ctx.Done():
			return
		}
		added, removed := diffKeys(last, list)
		c.log.Info("consul upstreams changed", "upstreams", len(list), "added", added, "removed", removed)
		last, sent = list, true
	}
}

// merged returns the upstreams of all services, sorted by Key, or false while
// some service has not been answered yet.
func (c *Consul) merged() ([]Upstream, bool) {
	all := make([]Upstream, 0)
	for _, w := range c.watches {
		w.mu.Lock()
		answered, ups := w.answered, w.upstreams
		w.mu.Unlock()
		if !answered {
			return nil, false
		}
		all = append(all, ups...)
	}
	all, dups := sortDedupe(all)
	for _, d := range dups {
		c.log.Debug("consul instance shares its address with an instance of another service; using the first",
			"service", d.Service, "id", d.ID, "upstream", d.Key())
	}
	return all, true
}

// diffKeys returns the keys of the upstreams in b but not in a, and in a but
// not in b. Both lists are sorted by Key.
func diffKeys(a, b []Upstream) (added, removed []string) {
	in := func(us []Upstream, k string) bool {
		_, found := slices.BinarySearchFunc(us, k, func(u Upstream, k string) int {
			switch uk := u.Key(); {
			case uk < k:
				return -1
			case uk > k:
				return 1
			}
			return 0
		})
		return found
	}
	for _, u := range b {
		if !in(a, u.Key()) {
			added = append(added, u.Key())
		}
	}
	for _, u := range a {
		if !in(b, u.Key()) {
			removed = append(removed, u.Key())
		}
	}
	return added, removed
}

// jitter returns a uniform random fraction in [0, 1).
func jitter() float64 { return rand.Float64() }
