package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"0f3c0e6e-8d3b-4c1a-9b7e-2f1d2e3c4b5a":                             true,
		"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8": false, // ";"
		"abc:def/ghi+jk=":                      true,
		"":                                     false,
		"a b":                                  false,
		"<script>":                             false,
		strings.Repeat("a", maxRequestIDLen):   true,
		strings.Repeat("a", maxRequestIDLen+1): false,
	} {
		if got := validRequestID(id); got != want {
			t.Errorf("validRequestID(%q) = %v; want %v", id, got, want)
		}
	}
	if a, b := newRequestID(), newRequestID(); !hexID.MatchString(a) || a == b {
		t.Errorf("newRequestID: got %q and %q; want two different 32-digit hex IDs", a, b)
	}
}

func TestCheckRequestIDHeader(t *testing.T) {
	if got, err := CheckRequestIDHeader("x-request-id"); err != nil || got != "X-Request-Id" {
		t.Errorf("x-request-id: got %q, %v; want X-Request-Id", got, err)
	}
	for _, bad := range []string{"X-Forwarded-For", "host", "Content-Length", "X Request", ""} {
		if _, err := CheckRequestIDHeader(bad); err == nil {
			t.Errorf("%q: accepted; want an error", bad)
		}
	}
}

// viaEachPath sends requests the three ways they reach the proxy: the
// HTTP/1.1 fast path, net/http's HTTP/1.1 server and HTTP/2. The response
// comes with its body read, and as sent: the clients neither ask for gzip
// nor undo it.
func viaEachPath(t *testing.T, p *Proxy) map[string]func(req *http.Request) *http.Response {
	t.Helper()
	addr, cfg, _ := fastFront(t, p, ConnOptions{})
	plainURL, plain := front(t, p)
	plain.Transport.(*http.Transport).DisableCompression = true
	h1cfg := cfg.Clone()
	h1cfg.NextProtos = []string{"http/1.1"}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: h1cfg, DisableCompression: true}}
	h2cfg := cfg.Clone()
	h2cfg.NextProtos = []string{"h2"}
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: h2cfg, ForceAttemptHTTP2: true, DisableCompression: true}}
	t.Cleanup(h1.CloseIdleConnections)
	t.Cleanup(h2.CloseIdleConnections)
	send := func(c *http.Client, base string, wantMajor int) func(req *http.Request) *http.Response {
		return func(req *http.Request) *http.Response {
			t.Helper()
			full, _ := http.NewRequest(req.Method, base+req.URL.RequestURI(), nil)
			full.Header = req.Header.Clone()
			resp, err := c.Do(full)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			if resp.ProtoMajor != wantMajor {
				t.Fatalf("got %s; want HTTP/%d", resp.Proto, wantMajor)
			}
			return resp
		}
	}
	return map[string]func(*http.Request) *http.Response{
		"HTTP/1.1 fast path": send(h1, "https://"+addr, 1),
		"HTTP/1.1 net/http":  send(plain, plainURL, 1),
		"HTTP/2":             send(h2, "https://"+addr, 2),
	}
}

// Each request gets an ID: the upstream sees it, the client gets it back
// (and not the upstream's own), and the access log records it. A client
// cannot choose it unless it comes through a trusted proxy.
func TestRequestID(t *testing.T) {
	up := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "the-upstream-s-own")
		w.Write([]byte("a"))
	})
	var logs lockedBuffer
	paths, err := NewPathPolicy([]string{"/blocked"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProxy(t, Options{RequestIDHeader: "x-request-id", Paths: paths,
		AccessLog: slog.New(slog.NewJSONHandler(&logs, nil))}, up.upstream())
	for name, send := range viaEachPath(t, p) {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "/x", nil)
			resp := send(req)
			got := resp.Header.Values("X-Request-Id")
			sent := up.lastHeader().Get("X-Request-Id")
			if len(got) != 1 || !hexID.MatchString(got[0]) || sent != got[0] {
				t.Fatalf("response X-Request-Id %q, upstream saw %q; want one 32-digit hex ID, the same", got, sent)
			}
			// The line is written once the response has gone out.
			eventually(t, "the access log records request_id "+got[0], func() bool {
				return strings.Contains(logs.String(), `"request_id":"`+got[0]+`"`)
			})
			if again := send(req).Header.Get("X-Request-Id"); again == got[0] {
				t.Errorf("two requests got the same ID %s", again)
			}

			req.Header.Set("X-Request-Id", "chosen-by-the-client")
			resp = send(req)
			if id := resp.Header.Get("X-Request-Id"); !hexID.MatchString(id) || up.lastHeader().Get("X-Request-Id") != id {
				t.Errorf("a client's own ID from an untrusted peer: response %q, upstream %q; want a new ID for both", id, up.lastHeader().Get("X-Request-Id"))
			}

			refused, _ := http.NewRequest(http.MethodGet, "/blocked", nil)
			resp = send(refused)
			if id := resp.Header.Get("X-Request-Id"); resp.StatusCode != http.StatusForbidden || !hexID.MatchString(id) {
				t.Errorf("a refused request: got %d with X-Request-Id %q; want 403 with an ID", resp.StatusCode, id)
			}
		})
	}
}

// A request through a trusted proxy keeps the ID that proxy gave it, when
// it is a plausible ID.
func TestRequestIDFromTrustedProxy(t *testing.T) {
	up := newBackend(t, "a", nil)
	trusted, err := ParseTrustedProxies([]string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	p := newTestProxy(t, Options{RequestIDHeader: "X-Request-Id", TrustedProxies: trusted,
		AccessLog: slog.New(slog.NewJSONHandler(&logs, nil))}, up.upstream())
	for name, send := range viaEachPath(t, p) {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "/x", nil)
			req.Header.Set("X-Request-Id", "0f3c0e6e-8d3b-4c1a-9b7e-2f1d2e3c4b5a")
			resp := send(req)
			if id, sent := resp.Header.Get("X-Request-Id"), up.lastHeader().Get("X-Request-Id"); id != "0f3c0e6e-8d3b-4c1a-9b7e-2f1d2e3c4b5a" || sent != id {
				t.Errorf("a trusted proxy's ID: response %q, upstream %q; want it kept", id, sent)
			}
			req.Header.Set("X-Request-Id", `"><img src=x>`)
			resp = send(req)
			if id := resp.Header.Get("X-Request-Id"); !hexID.MatchString(id) {
				t.Errorf("a trusted proxy's implausible ID: response %q; want a new one", id)
			}
		})
	}
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		if id, _ := rec["request_id"].(string); !validRequestID(id) {
			t.Errorf("access log line with request_id %q", id)
		}
	}
}

// Without RequestIDHeader nothing is added, and a client's header passes
// as any other.
func TestNoRequestIDByDefault(t *testing.T) {
	up := newBackend(t, "a", nil)
	var logs lockedBuffer
	p := newTestProxy(t, Options{AccessLog: slog.New(slog.NewJSONHandler(&logs, nil))}, up.upstream())
	for name, send := range viaEachPath(t, p) {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "/x", nil)
			if resp := send(req); resp.Header.Get("X-Request-Id") != "" || up.lastHeader().Get("X-Request-Id") != "" {
				t.Errorf("an ID without RequestIDHeader: response %q, upstream %q", resp.Header.Get("X-Request-Id"), up.lastHeader().Get("X-Request-Id"))
			}
		})
	}
	if strings.Contains(logs.String(), "request_id") {
		t.Errorf("access log with request_id without RequestIDHeader: %q", logs.String())
	}
}
