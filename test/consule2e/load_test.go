package consule2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/test/harness"
)

// loadPace is the least time between the starts of two requests of one
// load worker: a steady load that leaves CPU to flowgate, the stubs and
// Consul on a small machine.
const loadPace = 5 * time.Millisecond

// sample is the outcome of one request.
type sample struct {
	start, end time.Time
	node       string // the node that answered, "" when none did
	status     int    // 0 on a transport error
	err        error  // transport error, or an answer that is not the stub's
}

func (s sample) ok() bool { return s.err == nil && s.status == http.StatusOK }

func (s sample) String() string {
	return fmt.Sprintf("GET at %s: status %d node %q err %v", s.start.Format("15:04:05.000"), s.status, s.node, s.err)
}

// newClient returns an HTTPS client of its own (own connections) for
// flowgate's listener.
func newClient(t *testing.T, fg *harness.Flowgate) *http.Client {
	tr := &http.Transport{TLSClientConfig: fg.TLS.Clone(), ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get sends GET /headers and checks that a stub answered it: X-Node and the
// node in the body agree.
func get(c *http.Client, url string) sample {
	s := sample{start: time.Now()}
	resp, err := c.Get(url)
	if err != nil {
		s.err = err
		s.end = time.Now()
		return s
	}
	defer resp.Body.Close()
	s.status = resp.StatusCode
	body, err := io.ReadAll(resp.Body)
	s.end = time.Now()
	if err != nil {
		s.err = fmt.Errorf("reading the body: %w", err)
		return s
	}
	if resp.StatusCode != http.StatusOK {
		s.err = fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		return s
	}
	var reply struct {
		Node string `json:"node"`
	}
	if err := json.Unmarshal(body, &reply); err != nil {
		s.err = fmt.Errorf("not a stub's /headers answer: %w", err)
		return s
	}
	if h := resp.Header.Get("X-Node"); h != reply.Node || h == "" {
		s.err = fmt.Errorf("X-Node %q and body node %q differ", h, reply.Node)
		return s
	}
	s.node = reply.Node
	return s
}

// load is a continuous GET /headers load from several clients.
type load struct {
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []sample
}

// startLoad starts workers clients, each with its own connections, sending
// GET /headers every loadPace until Stop or for at most limit.
func startLoad(t *testing.T, fg *harness.Flowgate, workers int, limit time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	deadline := time.Now().Add(limit)
	url := fg.URL("/headers")
	for range workers {
		c := newClient(t, fg)
		l.wg.Go(func() {
			for time.Now().Before(deadline) {
				s := get(c, url)
				l.mu.Lock()
				l.samples = append(l.samples, s)
				l.mu.Unlock()
				select {
				case <-l.stop:
					return
				case <-time.After(time.Until(s.start.Add(loadPace))):
				}
			}
		})
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

// Stop stops the load, waits for the workers and returns every sample in
// completion order.
func (l *load) Stop() []sample {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	return l.snapshot()
}

// snapshot returns the samples so far.
func (l *load) snapshot() []sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.samples)
}

// count returns the number of successful requests per node among the
// samples that started in [from, to).
func count(samples []sample, from, to time.Time) map[string]int {
	nodes := make(map[string]int)
	for _, s := range samples {
		if s.ok() && !s.start.Before(from) && s.start.Before(to) {
			nodes[s.node]++
		}
	}
	return nodes
}

// firstAnswer returns the earliest end time of an answer by node among the
// samples that ended after from, and false when there is none.
func firstAnswer(samples []sample, node string, from time.Time) (time.Time, bool) {
	var first time.Time
	for _, s := range samples {
		if s.ok() && s.node == node && s.end.After(from) && (first.IsZero() || s.end.Before(first)) {
			first = s.end
		}
	}
	return first, !first.IsZero()
}

// lastStart returns the latest start time of a request answered by node,
// and false when there is none.
func lastStart(samples []sample, node string) (time.Time, bool) {
	var last time.Time
	for _, s := range samples {
		if s.ok() && s.node == node && s.start.After(last) {
			last = s.start
		}
	}
	return last, !last.IsZero()
}

// reportFailures fails the test when any sample failed, listing the first
// few.
func reportFailures(t *testing.T, what string, samples []sample) {
	t.Helper()
	var failed []sample
	for _, s := range samples {
		if !s.ok() {
			failed = append(failed, s)
		}
	}
	if len(failed) == 0 {
		return
	}
	var b strings.Builder
	for _, s := range failed[:min(len(failed), 10)] {
		fmt.Fprintf(&b, "\n  %v", s)
	}
	t.Errorf("%s: got %d failed requests of %d; want 0:%s", what, len(failed), len(samples), b.String())
}
