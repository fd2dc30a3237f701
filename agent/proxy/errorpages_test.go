package proxy

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/discovery"
)

func writePage(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadErrorPages(t *testing.T) {
	if e, err := LoadErrorPages(nil); e != nil || err != nil {
		t.Errorf("none: got %v, %v; want nil, nil", e, err)
	}
	page := writePage(t, "maintenance.html", "<h1>Back soon</h1>")
	e, err := LoadErrorPages(map[int]string{502: page, 503: page, 504: page})
	if err != nil {
		t.Fatal(err)
	}
	if string(e.pages[503]) != "<h1>Back soon</h1>" {
		t.Errorf("503 page %q", e.pages[503])
	}
	for _, tt := range []struct {
		files map[int]string
		want  string
	}{
		{map[int]string{500: page}, "500: flowgate answers 502, 503 and 504 itself"},
		{map[int]string{503: writePage(t, "page.txt", "x")}, "is not an .html file"},
		{map[int]string{503: filepath.Join(t.TempDir(), "gone.html")}, "503: stat"},
		{map[int]string{503: writePage(t, "empty.html", "")}, "is empty"},
		{map[int]string{502: writePage(t, "big.html", strings.Repeat("x", maxErrorPageBytes+1))}, "at most 65536"},
		{map[int]string{504: t.TempDir() + "/"}, "not an .html file"},
	} {
		if _, err := LoadErrorPages(tt.files); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v; want an error with %q", tt.files, err, tt.want)
		}
	}
}

func TestAcceptsHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": true,  // a browser's page load
		"application/json, text/plain, */*":                               false, // a script's API call
		"*/*":                                                             false,
		"":                                                                false,
		"TEXT/HTML":                                                       true,
		"text/html;q=0":                                                   false,
		"text/html-fragment":                                              false,
	} {
		var v []string
		if accept != "" {
			v = []string{accept}
		}
		if got := acceptsHTML(v); got != want {
			t.Errorf("Accept %q: got %v; want %v", accept, got, want)
		}
	}
}

// A browser gets the page with flowgate's 503, 502 and 504 on every path
// into the proxy; an API client gets the text; a HEAD gets no body.
func TestErrorPagesViaEachPath(t *testing.T) {
	page := writePage(t, "maintenance.html", "<!doctype html><h1>Flowable is being updated</h1>")
	pages, err := LoadErrorPages(map[int]string{502: page, 503: page})
	if err != nil {
		t.Fatal(err)
	}
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	// No upstream: 503. A node that takes the request and hangs up: 502.
	empty := newTestProxy(t, Options{ErrorPages: pages})
	ln := acceptEach(t, func(c net.Conn) {
		c.Read(make([]byte, 4096))
		c.Close()
	})
	gone := newTestProxy(t, Options{ErrorPages: pages, MaxAttempts: 1}, discovery.Upstream{Addr: ln.Addr().String(), Weight: 1})
	for _, tt := range []struct {
		name string
		p    *Proxy
		code int
		text string
	}{
		{"no node", empty, 503, "no upstream available"},
		{"node refuses", gone, 502, "upstream failed to answer"},
	} {
		for path, send := range viaEachPath(t, tt.p) {
			t.Run(tt.name+"/"+path, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, "/tasks", nil)
				req.Header.Set("Accept", browser)
				resp := send(req)
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != tt.code || string(body) != "<!doctype html><h1>Flowable is being updated</h1>" ||
					resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("browser: %d %v %q; want %d with the page", resp.StatusCode, resp.Header, body, tt.code)
				}
				req.Header.Set("Accept", "application/json, text/plain, */*")
				resp = send(req)
				body, _ = io.ReadAll(resp.Body)
				if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.text) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
					t.Errorf("API client: %d %v %q; want %d with the text", resp.StatusCode, resp.Header, body, tt.code)
				}
				head, _ := http.NewRequest(http.MethodHead, "/tasks", nil)
				head.Header.Set("Accept", browser)
				resp = send(head)
				body, _ = io.ReadAll(resp.Body)
				if resp.StatusCode != tt.code || len(body) != 0 {
					t.Errorf("HEAD: %d with %d bytes of body; want %d and none", resp.StatusCode, len(body), tt.code)
				}
			})
		}
	}
}
