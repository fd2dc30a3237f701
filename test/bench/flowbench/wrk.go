package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// wrkDone makes wrk print its summary as one JSON line, with the
// X-TLS-Resumed counts of wrkResumedHook when the script has it.
const wrkDone = `done = function(summary, latency, requests)
  local e = summary.errors
  local reported, resumed = 0, 0
  for _, t in ipairs(threads or {}) do
    reported = reported + (t:get("tls_reported") or 0)
    resumed = resumed + (t:get("tls_resumed") or 0)
  end
  io.write(string.format('FLOWBENCH {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,' ..
    '"tls_reported":%d,"tls_resumed":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), reported, resumed))
end
`

// wrkResumedHook counts, in each wrk thread, the responses that carry an
// X-TLS-Resumed header and those among them that say the handshake resumed:
// "r" from nginx ($ssl_session_reused), "1" from HAProxy
// (ssl_fc_is_resumed), "true" from Caddy ({http.request.tls.resumed}).
// Header names are compared in lower case: HAProxy sends them so, Caddy
// canonicalizes them. A response() hook makes wrk hand every response to
// Lua, so only the scenarios that need the counts load it.
const wrkResumedHook = `threads = {}
setup = function(thread) table.insert(threads, thread) end
tls_reported, tls_resumed = 0, 0
response = function(status, headers, body)
  for name, value in pairs(headers) do
    if string.lower(name) == "x-tls-resumed" then
      tls_reported = tls_reported + 1
      if value == "r" or value == "1" or value == "true" then
        tls_resumed = tls_resumed + 1
      end
      break
    end
  end
end
`

type wrkSummary struct {
	Requests    int64 `json:"requests"`
	DurationUS  int64 `json:"duration_us"`
	Bytes       int64 `json:"bytes"`
	Connect     int64 `json:"connect"`
	Read        int64 `json:"read"`
	Write       int64 `json:"write"`
	Status      int64 `json:"status"`
	Timeout     int64 `json:"timeout"`
	P50US       int64 `json:"p50_us"`
	P99US       int64 `json:"p99_us"`
	TLSReported int64 `json:"tls_reported"`
	TLSResumed  int64 `json:"tls_resumed"`
}

// wholeSeconds rounds a duration up to whole seconds, at least one: wrk and
// h2load take integer seconds.
func wholeSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// wrkOptions describe one wrk run.
type wrkOptions struct {
	url   string
	conns int
	d     time.Duration
	// newConns sends "Connection: close": wrk opens a new connection for
	// every request, resuming the TLS session of the previous one (OpenSSL
	// keeps it across SSL_clear).
	newConns bool
	// countResumed counts the X-TLS-Resumed response headers (see
	// wrkResumedHook) into the result's extra "server_reported" and
	// "server_resumed".
	countResumed bool
	// headers are sent with every request, as "Name: value".
	headers []string
	// postBytes, when above zero, makes every request a POST of that
	// many bytes of JSON, as Flowable's REST clients send.
	postBytes int
}

// wrkPost makes every request a POST with a JSON body of %d bytes.
const wrkPost = `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"pad":"' .. string.rep("x", %d - 10) .. '"}'
`

// runWrk runs wrk with one thread on the load core.
func runWrk(ctx context.Context, dir string, o wrkOptions) (loadResult, error) {
	name, script := "wrk-report.lua", wrkDone
	if o.countResumed {
		name, script = "wrk-report-resumed.lua", wrkResumedHook+wrkDone
	}
	if o.postBytes > 0 {
		if o.postBytes < 10 {
			return loadResult{}, fmt.Errorf("wrk: a POST body of %d bytes; want at least 10", o.postBytes)
		}
		name = fmt.Sprintf("wrk-post-%d-%s", o.postBytes, name)
		script = fmt.Sprintf(wrkPost, o.postBytes) + script
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
			return loadResult{}, err
		}
	}
	args := []string{"-c", loadCore, "wrk", "-t1", "-c", strconv.Itoa(o.conns),
		"-d", fmt.Sprintf("%ds", wholeSeconds(o.d)), "--timeout", "10s", "-s", path}
	if o.newConns {
		args = append(args, "-H", "Connection: close")
	}
	for _, h := range o.headers {
		args = append(args, "-H", h)
	}
	args = append(args, o.url)
	out, err := exec.CommandContext(ctx, "taskset", args...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk %s: %w: %s", o.url, err, lastLines(out, 5))
	}
	r, err := parseWrk(out)
	if err == nil && o.countResumed {
		r.extra = map[string]float64{"server_reported": float64(r.tlsReported), "server_resumed": float64(r.tlsResumed)}
	}
	return r.loadResult, err
}

// wrkResult is a wrk summary: the load result and the X-TLS-Resumed counts.
type wrkResult struct {
	loadResult
	tlsReported, tlsResumed int64
}

func parseWrk(out []byte) (wrkResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "FLOWBENCH ")
		if !ok {
			continue
		}
		var s wrkSummary
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			return wrkResult{}, fmt.Errorf("wrk summary %q: %w", line, err)
		}
		r := loadResult{
			requests: s.Requests,
			bytes:    s.Bytes,
			elapsed:  time.Duration(s.DurationUS) * time.Microsecond,
			p50:      time.Duration(s.P50US) * time.Microsecond,
			p99:      time.Duration(s.P99US) * time.Microsecond,
			errors:   s.Connect + s.Read + s.Write + s.Status + s.Timeout,
		}
		if r.errors > 0 {
			r.detail = fmt.Sprintf("wrk errors: connect %d, read %d, write %d, status %d, timeout %d",
				s.Connect, s.Read, s.Write, s.Status, s.Timeout)
		}
		return wrkResult{loadResult: r, tlsReported: s.TLSReported, tlsResumed: s.TLSResumed}, nil
	}
	return wrkResult{}, fmt.Errorf("no summary in wrk output: %s", lastLines(out, 5))
}

// runH2load runs h2load with one thread on the load core; latencies come
// from its per-request log.
//
// With postBytes above zero every request is a POST of that many bytes of
// JSON.
func runH2load(ctx context.Context, dir, url string, conns, streams int, d time.Duration, postBytes int) (loadResult, error) {
	logFile := filepath.Join(dir, "h2load.log")
	os.Remove(logFile)
	defer os.Remove(logFile)
	args := []string{"-c", loadCore, "h2load", "-t1", "-c", strconv.Itoa(conns), "-m", strconv.Itoa(streams),
		"-D", strconv.Itoa(wholeSeconds(d)), "--log-file", logFile}
	if postBytes > 0 {
		if postBytes < 10 {
			return loadResult{}, fmt.Errorf("h2load: a POST body of %d bytes; want at least 10", postBytes)
		}
		data := filepath.Join(dir, fmt.Sprintf("h2load-post-%d.json", postBytes))
		body := `{"pad":"` + strings.Repeat("x", postBytes-10) + `"}`
		if err := os.WriteFile(data, []byte(body), 0o600); err != nil {
			return loadResult{}, err
		}
		args = append(args, "-d", data, "-H", "content-type: application/json")
	}
	out, err := exec.CommandContext(ctx, "taskset", append(args, url)...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("h2load %s: %w: %s", url, err, lastLines(out, 5))
	}
	r, err := parseH2load(out)
	if err != nil {
		return r, err
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		return r, fmt.Errorf("h2load log: %w", err)
	}
	lat, err := parseH2loadLog(log)
	if err != nil {
		return r, err
	}
	r.p50, r.p99 = percentile(lat, 50), percentile(lat, 99)
	return r, nil
}

var (
	h2Finished = regexp.MustCompile(`finished in ([0-9.]+)(s|ms),`)
	h2Requests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Traffic  = regexp.MustCompile(`traffic: .*\((\d+)\) total`)
)

func parseH2load(out []byte) (loadResult, error) {
	s := string(out)
	var r loadResult
	if !strings.Contains(s, "Application protocol: h2") {
		return r, fmt.Errorf("h2load did not negotiate h2: %s", lastLines(out, 8))
	}
	m := h2Finished.FindStringSubmatch(s)
	q := h2Requests.FindStringSubmatch(s)
	c := h2Status.FindStringSubmatch(s)
	if m == nil || q == nil || c == nil {
		return r, fmt.Errorf("unexpected h2load output: %s", lastLines(out, 8))
	}
	secs, _ := strconv.ParseFloat(m[1], 64)
	if m[2] == "ms" {
		secs /= 1000
	}
	r.elapsed = time.Duration(secs * float64(time.Second))
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	r.requests = n(q[4])
	r.errors = n(q[5]) + n(q[6]) + n(q[7]) + n(c[3]) + n(c[4])
	if t := h2Traffic.FindStringSubmatch(s); t != nil {
		r.bytes = n(t[1])
	}
	if r.errors > 0 {
		r.detail = strings.TrimSpace(q[0] + "; " + c[0])
	}
	return r, nil
}

// parseH2loadLog reads h2load's --log-file: start time, status, and
// microseconds to the end of the response, tab separated. It returns the
// sorted latencies of 2xx responses.
func parseH2loadLog(b []byte) ([]time.Duration, error) {
	var lat []time.Duration
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 {
			continue
		}
		if !strings.HasPrefix(f[1], "2") {
			continue
		}
		us, err := strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("h2load log line %q: %w", sc.Text(), err)
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("h2load log holds no successful request")
	}
	slices.Sort(lat)
	return lat, nil
}

// lastLines returns the last n lines of out, for error messages.
func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
