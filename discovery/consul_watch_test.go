package discovery

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

func TestBackoff(t *testing.T) {
	for _, limit := range []time.Duration{30 * time.Second, 4 * time.Second, 100 * time.Millisecond} {
		for attempt := 1; attempt <= 30; attempt++ {
			d := min(initialBackoff<<(attempt-1), limit)
			lo, hi := backoff(attempt, limit, 0), backoff(attempt, limit, 0.9999)
			if lo != d/2 || hi < d/2 || hi >= d {
				t.Errorf("backoff(%d, %v): got [%v, %v]; want [%v, %v)", attempt, limit, lo, hi, d/2, d)
			}
		}
	}
	if got := backoff(1000, DefaultConsulMaxBackoff, 0.9999); got >= DefaultConsulMaxBackoff {
		t.Errorf("backoff after 1000 attempts: got %v; want below %v", got, DefaultConsulMaxBackoff)
	}
}

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name      string
		prev, got uint64
		want      uint64
		wantReset bool
	}{
		{"first read", 0, 42, 42, false},
		{"moved on", 42, 50, 50, false},
		{"unchanged", 42, 42, 42, false},
		{"went backwards", 42, 7, 0, true},
		{"zero from consul", 0, 0, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reset := nextIndex(tt.prev, tt.got)
			if got != tt.want || reset != tt.wantReset {
				t.Errorf("nextIndex(%d, %d): got %d, %v; want %d, %v", tt.prev, tt.got, got, reset, tt.want, tt.wantReset)
			}
		})
	}
}

// runConsul starts c.Run and stops it when the test ends.
func runConsul(t *testing.T, opts ConsulOptions) (*Consul, <-chan Update) {
	t.Helper()
	c, err := NewConsul(opts)
	if err != nil {
		t.Fatalf("NewConsul: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ups := make(chan Update, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, ups)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c, ups
}

// fakeOptions are options for a watch of "flowable" on f in memory.
func fakeOptions(f *fakeConsul, reg prometheus.Registerer) ConsulOptions {
	opts := ConsulOptions{Services: []string{"flowable"}, MaxBackoff: 4 * time.Second, Registerer: reg}
	opts.Address = "127.0.0.1:8500"
	opts.transport = memTransport{f}
	return opts
}

// noUpdate fails if an update is waiting.
func noUpdate(t *testing.T, ups <-chan Update) {
	t.Helper()
	select {
	case u := <-ups:
		t.Fatalf("got update %+v; want none", u)
	default:
	}
}

// nextUpdate returns the waiting update (inside a bubble, after
// synctest.Wait) or fails.
func nextUpdate(t *testing.T, ups <-chan Update) Update {
	t.Helper()
	synctest.Wait()
	select {
	case u := <-ups:
		return u
	default:
		t.Fatal("got no update; want one")
		return Update{}
	}
}

func addrs(us []Upstream) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Addr)
	}
	return out
}

// TestConsulIndexReset runs the watch against an HTTP server whose index
// goes backwards, as after a snapshot restore.
func TestConsulIndexReset(t *testing.T) {
	f := newFakeConsul()
	f.set(10, "flowable", entry("a", "10.0.0.1", 8090))
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close) // registered first, so it runs after Run stopped
	opts := ConsulOptions{Services: []string{"flowable"}, MinInterval: time.Millisecond}
	opts.Address = srv.URL
	_, ups := runConsul(t, opts)

	recv := func() Update {
		t.Helper()
		select {
		case u := <-ups:
			return u
		case <-time.After(10 * time.Second):
			t.Fatal("no update within 10s")
			return Update{}
		}
	}
	if got := addrs(recv().Upstreams); !slices.Equal(got, []string{"10.0.0.1:8090"}) {
		t.Fatalf("first update: got %v; want [10.0.0.1:8090]", got)
	}
	waitQueries(t, f, 2) // the second query blocks on index 10
	f.set(5, "flowable", entry("b", "10.0.0.2", 8090))
	if got := addrs(recv().Upstreams); !slices.Equal(got, []string{"10.0.0.2:8090"}) {
		t.Fatalf("update after the index went backwards: got %v; want [10.0.0.2:8090]", got)
	}
	var got []uint64
	for _, q := range waitQueries(t, f, 4) {
		got = append(got, q.index)
	}
	if want := []uint64{0, 10, 0, 5}; !slices.Equal(got[:4], want) {
		t.Errorf("query indexes: got %v; want %v (reset to 0, then block on 5)", got, want)
	}
}

// waitQueries waits until f has received at least n queries.
func waitQueries(t *testing.T, f *fakeConsul, n int) []fakeQuery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		qs := f.queryLog()
		if len(qs) >= n {
			return qs
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d queries; want %d", len(qs), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConsulErrorsKeepList checks that failing queries keep the list, back
// off exponentially up to MaxBackoff, are counted and raise the staleness.
func TestConsulErrorsKeepList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeConsul()
		f.set(2, "flowable", entry("a", "10.0.0.1", 8090), entry("b", "10.0.0.2", 8090))
		reg := prometheus.NewRegistry()
		c, ups := runConsul(t, fakeOptions(f, reg))
		if got := nextUpdate(t, ups); len(got.Upstreams) != 2 || got.Source != "consul" {
			t.Fatalf("first update: got %+v; want 2 upstreams from consul", got)
		}

		time.Sleep(time.Second) // the watch now blocks on index 2
		down := time.Now()
		f.setDown("", true)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		noUpdate(t, ups)

		st := c.Status().Services[0]
		if st.ConsecutiveErrors < 8 || !strings.Contains(st.LastError, "connection refused") ||
			st.Healthy != 2 || len(st.Upstreams) != 2 || !c.Ready() {
			t.Errorf("status while down: got %+v; want >= 8 errors, the connection error, the 2 upstreams kept, ready", st)
		}
		labels := map[string]string{"service": "flowable"}
		if n, _ := gauge(t, reg, MetricDiscoveryErrors, labels); int(n) != st.ConsecutiveErrors {
			t.Errorf("%s: got %v; want %d", MetricDiscoveryErrors, n, st.ConsecutiveErrors)
		}
		if s, ok := gauge(t, reg, MetricDiscoveryStaleness, labels); !ok || s < 30.9 || s > 31.1 {
			t.Errorf("%s: got %v (present %v); want 31", MetricDiscoveryStaleness, s, ok)
		}
		if st.SecondsSinceSuccess < 30.9 || st.SecondsSinceSuccess > 31.1 {
			t.Errorf("status seconds since success: got %v; want 31", st.SecondsSinceSuccess)
		}

		// Retries follow the backoff: gap k is in [d/2, d) for d = 250ms·2^(k-1), capped at 4s.
		prev := down
		k := 1
		for _, q := range f.queryLog() {
			if !q.at.After(down) {
				continue
			}
			d := min(initialBackoff<<(k-1), 4*time.Second)
			if gap := q.at.Sub(prev); gap < d/2 || gap >= d {
				t.Errorf("retry %d came %v after the previous failure; want [%v, %v)", k, gap, d/2, d)
			}
			prev, k = q.at, k+1
		}
		if k < 9 {
			t.Errorf("got %d retries in 30s; want at least 8", k-1)
		}

		f.setDown("", false)
		f.set(3, "flowable", entry("a", "10.0.0.1", 8090))
		time.Sleep(4 * time.Second)
		if got := addrs(nextUpdate(t, ups).Upstreams); !slices.Equal(got, []string{"10.0.0.1:8090"}) {
			t.Errorf("update after recovery: got %v; want [10.0.0.1:8090]", got)
		}
		if st := c.Status().Services[0]; st.ConsecutiveErrors != 0 || st.SecondsSinceSuccess > 4 || st.LastError == "" {
			t.Errorf("status after recovery: got %+v; want 0 consecutive errors, fresh success, the last error kept", st)
		}
		if _, err := json.Marshal(c.Status()); err != nil {
			t.Errorf("marshalling status: %v", err)
		}
	})
}

// TestConsulUnchangedIndex checks that a blocking query that times out
// changes nothing but counts as contact with Consul.
func TestConsulUnchangedIndex(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeConsul()
		f.set(7, "flowable", entry("a", "10.0.0.1", 8090))
		reg := prometheus.NewRegistry()
		opts := fakeOptions(f, reg)
		opts.WaitTime = time.Second
		c, ups := runConsul(t, opts)
		nextUpdate(t, ups)
		start := time.Now()

		time.Sleep(10*time.Second + 500*time.Millisecond)
		synctest.Wait()
		noUpdate(t, ups)
		qs := f.queryLog()
		if len(qs) < 10 || len(qs) > 12 {
			t.Errorf("got %d queries in 10.5s with a 1s wait; want 10 to 12", len(qs))
		}
		for _, q := range qs[1:] {
			if q.index != 7 {
				t.Errorf("query with index %d; want every blocking query on 7", q.index)
			}
		}
		labels := map[string]string{"service": "flowable"}
		if n, _ := gauge(t, reg, MetricDiscoveryUpdates, labels); n != 1 {
			t.Errorf("%s: got %v; want 1", MetricDiscoveryUpdates, n)
		}
		if st := c.Status().Services[0]; st.LastSuccess.Before(start.Add(10*time.Second)) || st.Index != 7 {
			t.Errorf("status: got last success %v index %d; want >= %v and 7", st.LastSuccess, st.Index, start.Add(10*time.Second))
		}
	})
}

// TestConsulMinInterval checks that a stream of index changes is read at
// most once per MinInterval (plus jitter), and that index changes that do not
// change the list send nothing.
func TestConsulMinInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeConsul()
		e := entry("a", "10.0.0.1", 8090)
		f.set(1, "flowable", e)
		_, ups := runConsul(t, fakeOptions(f, nil))
		nextUpdate(t, ups)
		for i := uint64(2); i < 400; i++ {
			time.Sleep(5 * time.Millisecond)
			f.set(i, "flowable", e)
		}
		synctest.Wait()
		noUpdate(t, ups)
		qs := f.queryLog()
		if len(qs) < 20 {
			t.Fatalf("got %d queries in 2s of changes; want at least 20", len(qs))
		}
		maxGap := DefaultConsulMinInterval + DefaultConsulMinInterval/4 + 5*time.Millisecond
		for i := 1; i < len(qs)-1; i++ {
			if gap := qs[i].at.Sub(qs[i-1].at); gap < DefaultConsulMinInterval || gap > maxGap {
				t.Errorf("query %d started %v after the previous one; want [%v, %v]", i, gap, DefaultConsulMinInterval, maxGap)
			}
		}
	})
}

func TestConsulFailOpen(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(map[bool]string{false: "trust consul", true: "fail open"}[failOpen], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeConsul()
				f.set(1, "flowable", entry("a", "10.0.0.1", 8090))
				opts := fakeOptions(f, nil)
				opts.FailOpen = failOpen
				c, ups := runConsul(t, opts)
				nextUpdate(t, ups)

				f.set(2, "flowable", entry("a", "10.0.0.1", 8090, serviceCheck(api.HealthCritical)))
				time.Sleep(time.Second)
				synctest.Wait()
				st := c.Status().Services[0]
				if failOpen {
					noUpdate(t, ups)
					if !st.FailOpen || st.Healthy != 0 || len(st.Upstreams) != 1 {
						t.Errorf("status: got %+v; want fail open, 0 healthy, the old upstream kept", st)
					}
				} else {
					if got := nextUpdate(t, ups); len(got.Upstreams) != 0 {
						t.Errorf("update: got %v; want an empty list", got.Upstreams)
					}
					if st.FailOpen || st.Critical != 1 {
						t.Errorf("status: got %+v; want not fail open, 1 critical", st)
					}
				}

				f.set(3, "flowable", entry("b", "10.0.0.2", 8090))
				if got := addrs(nextUpdate(t, ups).Upstreams); !slices.Equal(got, []string{"10.0.0.2:8090"}) {
					t.Errorf("update after recovery: got %v; want [10.0.0.2:8090]", got)
				}
			})
		})
	}
}

// TestConsulMergesServices checks that nothing is sent until every service
// answered, and that the lists are merged, sorted and deduplicated.
func TestConsulMergesServices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeConsul()
		f.set(1, "ui", entry("ui-1", "10.0.0.2", 8080), entry("ui-2", "10.0.0.1", 8080))
		f.set(2, "rest", entry("rest-1", "10.0.0.3", 8090), entry("rest-dup", "10.0.0.1", 8080))
		f.setDown("rest", true)
		reg := prometheus.NewRegistry()
		opts := fakeOptions(f, reg)
		opts.Services = []string{"ui", "rest"}
		c, ups := runConsul(t, opts)

		time.Sleep(5 * time.Second)
		synctest.Wait()
		noUpdate(t, ups)
		if c.Ready() {
			t.Error("Ready before every service answered: got true; want false")
		}
		if s, _ := gauge(t, reg, MetricDiscoveryStaleness, map[string]string{"service": "rest"}); s < 4.9 {
			t.Errorf("%s of a never answered service: got %v; want about 5", MetricDiscoveryStaleness, s)
		}

		f.setDown("rest", false)
		time.Sleep(4 * time.Second)
		got := nextUpdate(t, ups).Upstreams
		want := []Upstream{
			{Addr: "10.0.0.1:8080", Weight: 1, Service: "rest", ID: "rest-dup"},
			{Addr: "10.0.0.2:8080", Weight: 1, Service: "ui", ID: "ui-1"},
			{Addr: "10.0.0.3:8090", Weight: 1, Service: "rest", ID: "rest-1"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("merged list (-want +got):\n%s", diff)
		}
		if !c.Ready() {
			t.Error("Ready after every service answered: got false; want true")
		}
		st := c.Status()
		if len(st.Services) != 2 || st.Services[0].Service != "ui" || st.Services[1].Healthy != 2 {
			t.Errorf("status: got %+v; want ui then rest with 2 healthy", st.Services)
		}
	})
}
