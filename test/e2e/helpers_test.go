package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowgate/flowgate/test/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(harness.M(m)) }

// fakeSecret is what the stub's /actuator/env reveals; it must never come
// through flowgate.
const fakeSecret = "stub-secret-must-not-leak"

// twoNodes starts two stub nodes, "a" and "b".
func twoNodes(t *testing.T) (a, b *harness.Stub) {
	t.Helper()
	return harness.StartStub(t, "a"), harness.StartStub(t, "b")
}

// runTool runs an external program with a timeout and returns its stdout,
// stderr and exit code. A program that cannot run fails the test.
func runTool(t *testing.T, stdin string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return o.String(), e.String(), 0
}

// curl runs curl quietly (errors shown) with args and returns stdout. A
// failed transfer fails the test.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	bin := harness.RequireTool(t, "curl")
	args = append([]string{"-sS", "--max-time", "20"}, args...)
	out, errOut, code := runTool(t, "", bin, args...)
	if code != 0 {
		t.Fatalf("curl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// caFile writes flowgate's built-in CA to a file for curl --cacert.
func caFile(t *testing.T, fg *harness.Flowgate) string {
	t.Helper()
	if fg.CAPEM == nil {
		t.Fatal("flowgate serves no built-in CA")
	}
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, fg.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// headersReply is the stub's /headers answer.
type headersReply struct {
	Node       string              `json:"node"`
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	RequestURI string              `json:"request_uri"`
	Headers    map[string][]string `json:"headers"`
}

func decodeHeaders(t *testing.T, body string) headersReply {
	t.Helper()
	var h headersReply
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("decoding the stub's /headers answer: %v\n%s", err, body)
	}
	return h
}

// result is the outcome of one request under load.
type result struct {
	node   string // X-Node, empty when the node did not answer
	status int    // 0 on a transport error
	err    error
	start  time.Time
}

// get sends one GET and reads the whole body.
func get(c *http.Client, url string) result {
	r := result{start: time.Now()}
	resp, err := c.Get(url)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		r.err = err
	}
	r.status = resp.StatusCode
	r.node = resp.Header.Get("X-Node")
	return r
}

// load sends GETs to url from workers goroutines until stop is closed or
// limit requests were sent, and returns every result in completion order.
func load(c *http.Client, url string, workers, limit int, stop <-chan struct{}) []result {
	var (
		mu   sync.Mutex
		out  []result
		sent int
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				if sent >= limit {
					mu.Unlock()
					return
				}
				sent++
				mu.Unlock()
				r := get(c, url)
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// countNodes counts successful results per node and lists the failures.
func countNodes(results []result) (map[string]int, []result) {
	counts := make(map[string]int)
	var failed []result
	for _, r := range results {
		if r.err != nil || r.status != http.StatusOK {
			failed = append(failed, r)
			continue
		}
		counts[r.node]++
	}
	return counts, failed
}
