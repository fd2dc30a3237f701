package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/discovery"
)

func checkErrorHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Type":           "text/plain; charset=utf-8",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: got %q; want %q", k, got, want)
		}
	}
}

func TestNoUpstream503(t *testing.T) {
	t.Run("empty set", func(t *testing.T) {
		p := newTestProxy(t, Options{})
		url, c := front(t, p)
		status, body, hdr := get(t, c, url+"/", nil)
		if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "5" {
			t.Fatalf("got %d Retry-After=%q; want 503 Retry-After=5", status, hdr.Get("Retry-After"))
		}
		if body != "no upstream available; try again shortly\n" {
			t.Errorf("body: got %q", body)
		}
		checkErrorHeaders(t, hdr)
	})
	t.Run("empty set with a configured Retry-After", func(t *testing.T) {
		p := newTestProxy(t, Options{NoUpstreamRetryAfter: 1500 * time.Millisecond})
		url, c := front(t, p)
		if _, _, hdr := get(t, c, url+"/", nil); hdr.Get("Retry-After") != "2" {
			t.Errorf("Retry-After: got %q; want 2 (1.5s rounded up)", hdr.Get("Retry-After"))
		}
	})
	t.Run("set emptied after it had nodes", func(t *testing.T) {
		a := newBackend(t, "a", nil)
		p := newTestProxy(t, Options{}, a.upstream())
		if !p.SetUpstreams(nil) {
			t.Fatal("emptying the set reported no change")
		}
		url, c := front(t, p)
		if status, _, _ := get(t, c, url+"/", nil); status != http.StatusServiceUnavailable {
			t.Errorf("got %d; want 503", status)
		}
	})
	t.Run("every node ejected", func(t *testing.T) {
		clock := newFakeClock()
		dead := discovery.Upstream{Addr: deadAddr(t), Weight: 1}
		p := newTestProxy(t, Options{MaxFails: 1, FailTimeout: 30 * time.Second, Now: clock.Now}, dead)
		url, c := front(t, p)
		status, body, hdr := get(t, c, url+"/", nil)
		if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "30" {
			t.Fatalf("connect refused by the only node: got %d Retry-After=%q; want 503 Retry-After=30", status, hdr.Get("Retry-After"))
		}
		noLeak(t, body, dead.Addr)
		clock.Advance(12 * time.Second)
		status, _, hdr = get(t, c, url+"/", nil)
		if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "18" {
			t.Errorf("while ejected: got %d Retry-After=%q; want 503 Retry-After=18", status, hdr.Get("Retry-After"))
		}
		if got := p.Status()[0].Failures; got != 1 {
			t.Errorf("attempts on the ejected node: got %d; want 1 (no request while ejected)", got)
		}
	})
}

// rawBackend answers every connection with raw bytes, then closes it.
func rawBackend(t *testing.T, reply string) discovery.Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			c.Read(buf)
			io.WriteString(c, reply)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return discovery.Upstream{Addr: ln.Addr().String(), Weight: 1}
}

func TestBadGateway502(t *testing.T) {
	tests := []struct {
		name  string
		reply string
	}{
		{"malformed status line", "HTTP/1.1 abc\r\n\r\n"},
		{"closed without a response", ""},
		{"garbage", "SSH-2.0-OpenSSH_9.6\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := rawBackend(t, tt.reply)
			p := newTestProxy(t, Options{}, up)
			url, c := front(t, p)
			status, body, hdr := get(t, c, url+"/", nil)
			if status != http.StatusBadGateway {
				t.Fatalf("got %d %q; want 502", status, body)
			}
			if body != "upstream failed to answer\n" {
				t.Errorf("body: got %q; want %q", body, "upstream failed to answer\n")
			}
			checkErrorHeaders(t, hdr)
			noLeak(t, body, up.Addr, "malformed", "HTTP response")
		})
	}
}

func TestGatewayTimeout504(t *testing.T) {
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // the proxy gives up first
	})
	p := newTestProxy(t, Options{Transport: TransportOptions{ResponseHeaderTimeout: 100 * time.Millisecond}}, slow.upstream())
	url, c := front(t, p)
	status, body, hdr := get(t, c, url+"/", nil)
	if status != http.StatusGatewayTimeout {
		t.Fatalf("got %d %q; want 504", status, body)
	}
	if body != "upstream timed out\n" {
		t.Errorf("body: got %q; want %q", body, "upstream timed out\n")
	}
	checkErrorHeaders(t, hdr)
	noLeak(t, body, slow.upstream().Addr)
}

func TestBodyLimit413(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := newTestProxy(t, Options{MaxBodyBytes: 10}, a.upstream())
	url, c := front(t, p)

	t.Run("declared length", func(t *testing.T) {
		status, _ := post(t, c, url+"/", strings.Repeat("x", 100))
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("got %d; want 413", status)
		}
	})
	t.Run("chunked", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, url+"/", io.MultiReader(strings.NewReader(strings.Repeat("x", 100))))
		req.ContentLength = -1
		status, _, _ := do(t, c, req)
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("got %d; want 413", status)
		}
	})
	t.Run("within the limit", func(t *testing.T) {
		if status, body := post(t, c, url+"/", "small"); status != http.StatusOK || body != "a" {
			t.Errorf("got %d %q; want 200 \"a\"", status, body)
		}
	})
}
