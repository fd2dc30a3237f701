package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseFastRequest(t *testing.T) {
	const base = "GET /a/b?x=1 HTTP/1.1\r\nHost: app.example.com\r\n"
	r, fr, ok := parseFastRequest([]byte("GET /a/b?x=1 HTTP/1.1\r\n"+
		"Host: app.example.com:443\r\n"+
		"Accept: */*\r\n"+
		"cookie: a=1\r\n"+
		"Cookie:  b=2 \r\n"+
		"X-Custom-Thing: \t v \r\n"+
		"Connection: keep-alive, close\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Authorization: Basic secret\r\n"+
		"X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n"+
		"X-Forwarded-For: 10.0.0.3\r\n"+
		"X-Forwarded-Host: evil.example\r\n"+
		"X-Real-IP: 6.6.6.6\r\n"+
		"Forwarded: for=6.6.6.6\r\n"+
		"\r\n"), "192.0.2.1:5555")
	if !ok {
		t.Fatal("a plain GET was declined")
	}
	if r.Method != "GET" || r.RequestURI != "/a/b?x=1" || r.URL.Path != "/a/b" || r.URL.RawQuery != "x=1" ||
		r.Host != "app.example.com:443" || r.RemoteAddr != "192.0.2.1:5555" || r.Proto != "HTTP/1.1" {
		t.Errorf("request: got %s %q path %q query %q host %q remote %q", r.Method, r.RequestURI, r.URL.Path, r.URL.RawQuery, r.Host, r.RemoteAddr)
	}
	want := http.Header{
		"Accept":         {"*/*"},
		"Cookie":         {"a=1", "b=2"},
		"X-Custom-Thing": {"v"},
		"User-Agent":     {""}, // none sent: none forwarded
	}
	if !reflect.DeepEqual(r.Header, want) {
		t.Errorf("forwarded header: got %v; want %v", r.Header, want)
	}
	if !slices.Equal(fr.xff, []string{"10.0.0.1, 10.0.0.2", "10.0.0.3"}) || !fr.close {
		t.Errorf("got xff %q close %v; want both X-Forwarded-For values and close", fr.xff, fr.close)
	}

	declined := map[string]string{
		"OPTIONS *":             "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"CONNECT":               "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"TRACE":                 "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
		"unknown method":        "PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n",
		"lower-case post":       "post / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
		"lower-case method":     "get / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HTTP/1.0":              "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
		"HTTP/2 text":           "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"absolute form":         "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"no version":            "GET /\r\nHost: a\r\n\r\n",
		"double space":          "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
		"tab in target":         "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
		"non-ASCII target":      "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
		"bad escape":            "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"no host":               "GET / HTTP/1.1\r\n\r\n",
		"empty host":            "GET / HTTP/1.1\r\nHost: \r\n\r\n",
		"two hosts":             "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"host with slash":       "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
		"host with space":       "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"body over 16 KiB":      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 16385\r\n\r\n",
		"huge length":           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"two lengths":           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
		"length list":           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
		"length with sign":      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
		"negative length":       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
		"length in hex":         "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
		"space in length":       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n",
		"empty length":          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
		"length and chunked":    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"chunked and length":    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"length, other case":    "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\nContent-Length: 6\r\n\r\n",
		"expect with a body":    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
		"transfer-encoding":     "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"TE in other case":      "GET / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n",
		"expect":                "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
		"upgrade":               "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"upgrade alone":         "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
		"connection token":      "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Secret\r\n\r\n",
		"te":                    "GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
		"trailer":               "GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n\r\n",
		"http2-settings":        "GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAA\r\n\r\n",
		"obs-fold":              "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
		"space before colon":    "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
		"empty name":            "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
		"no colon":              "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n",
		"bare LF":               "GET / HTTP/1.1\nHost: a\r\n\r\n",
		"bare LF in field":      "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n",
		"bare CR in field":      "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
		"NUL in value":          "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
		"control char in value": "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n",
		"DEL in value":          "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n",
		"bytes after the head":  "GET / HTTP/1.1\r\nHost: a\r\n\r\nX",
		"unterminated head":     "GET / HTTP/1.1\r\nHost: a\r\n",
	}
	for name, head := range declined {
		if _, _, ok := parseFastRequest([]byte(head), "192.0.2.1:5555"); ok {
			t.Errorf("%s: accepted %q; want it left to net/http", name, head)
		}
	}
	for _, tt := range []struct {
		head   string
		method string
		length int64
	}{
		{"POST /flowable-rest/service/query/tasks HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n", "POST", 27},
		{"POST / HTTP/1.1\r\nHost: a\r\n\r\n", "POST", 0},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "POST", 0},
		{"PUT / HTTP/1.1\r\nHost: a\r\ncontent-length: 016384\r\n\r\n", "PUT", fastMaxBody},
		{"PATCH / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n", "PATCH", 1},
		{"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n", "DELETE", 0},
		{"OPTIONS /x HTTP/1.1\r\nHost: a\r\nOrigin: https://b\r\n\r\n", "OPTIONS", 0},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n", "GET", 2},
	} {
		r, fr, ok := parseFastRequest([]byte(tt.head), "192.0.2.1:1")
		if !ok {
			t.Errorf("%q declined; want it on the fast path", tt.head)
			continue
		}
		if r.Method != tt.method || fr.contentLength != tt.length || r.ContentLength != tt.length || r.Header["Content-Length"] != nil {
			t.Errorf("%q: method %s, length %d (request %d), header %v; want %s, %d, no Content-Length field",
				tt.head, r.Method, fr.contentLength, r.ContentLength, r.Header, tt.method, tt.length)
		}
	}
	if _, _, ok := parseFastRequest([]byte(base+"\r\n"), "192.0.2.1:1"); !ok {
		t.Error("the base request of the declined cases was itself declined")
	}
	if r, _, ok := parseFastRequest([]byte("HEAD / HTTP/1.1\r\nHost: [::1]:8443\r\nUser-Agent: x\r\n\r\n"), "[::1]:1"); !ok || r.Method != "HEAD" || r.Header.Get("User-Agent") != "x" {
		t.Errorf("HEAD with an IPv6 host: ok %v", ok)
	}
}

// FuzzParseFastRequest checks the fast path against net/http's own
// request parser: whatever the fast path takes, net/http must take too,
// and read the same method, target, host and fields from it.
func FuzzParseFastRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a?b=c HTTP/1.1\r\nHost: a:1\r\nCookie: x=y\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
		"HEAD /%41 HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n",
		"GET //x HTTP/1.1\r\nHost: a\r\nAccept: a\r\naccept: b\r\n\r\n",
		"GET /a:b;c=d/e@f$g&h+i,j~k?q HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a? HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a?b? HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a??b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a!b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a(b)*c HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /{x}|\"y\" HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /q HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n",
		"PUT /q HTTP/1.1\r\nHost: a\r\ncontent-length: 00\r\n\r\n",
		"DELETE /q HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		r, fr, ok := parseFastRequest(head, "192.0.2.1:1")
		if !ok {
			return
		}
		ref, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("fast path took %q, which net/http refuses: %v", head, err)
		}
		if ref.Method != r.Method || ref.RequestURI != r.RequestURI || ref.Host != r.Host ||
			!reflect.DeepEqual(*ref.URL, *r.URL) || ref.ContentLength != fr.contentLength || r.ContentLength != fr.contentLength ||
			len(ref.TransferEncoding) != 0 || ref.Close != fr.close {
			t.Fatalf("%q: fast path read %s %q host %q close %v length %d; net/http %s %q host %q close %v length %d",
				head, r.Method, r.RequestURI, r.Host, fr.close, fr.contentLength, ref.Method, ref.RequestURI, ref.Host, ref.Close, ref.ContentLength)
		}
		if fr.contentLength > fastMaxBody {
			t.Fatalf("%q: a body of %d bytes on the fast path", head, fr.contentLength)
		}
		for k, vv := range ref.Header {
			switch k {
			case "Content-Length":
				if _, ok := r.Header[k]; ok {
					t.Fatalf("%q: %s forwarded as a field", head, k)
				}
			case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
				"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-Ip":
				if _, ok := r.Header[k]; ok {
					t.Fatalf("%q: %s forwarded", head, k)
				}
			case "X-Forwarded-For":
				if !slices.Equal(vv, fr.xff) {
					t.Fatalf("%q: X-Forwarded-For %q; net/http %q", head, fr.xff, vv)
				}
			default:
				if !slices.Equal(r.Header[k], vv) {
					t.Fatalf("%q: %s %q; net/http %q", head, k, r.Header[k], vv)
				}
			}
		}
		for k := range r.Header {
			if _, ok := ref.Header[k]; !ok && !(k == "User-Agent" && strings.Join(r.Header[k], "") == "") {
				t.Fatalf("%q: %s forwarded but not sent", head, k)
			}
		}
	})
}

// TestRequestBufReuse parses requests one after another into one buffer,
// as a connection does: each request has its own fields only, and a
// plain request costs its head's text and nothing else.
func TestRequestBufReuse(t *testing.T) {
	b := newRequestBuf(t.Context())
	first := "GET /a?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: ua\r\nAccept: */*\r\nCookie: c=1\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
	r, fr, ok := b.parse([]byte(first), "192.0.2.1:1")
	if !ok || r.Context() != t.Context() || len(r.Header) != 3 || !slices.Equal(fr.xff, []string{"10.0.0.1"}) {
		t.Fatalf("first request: ok %v, header %v, xff %q", ok, r.Header, fr.xff)
	}
	r.Header["Cookie"] = append(r.Header["Cookie"], "appended") // must not write into the next value
	b.release()
	r, fr, ok = b.parse([]byte("HEAD /b HTTP/1.1\r\nHost: b\r\nCookie: c=2\r\nX-Z: z\r\n\r\n"), "192.0.2.1:1")
	want := http.Header{"Cookie": {"c=2"}, "X-Z": {"z"}, "User-Agent": {""}}
	if !ok || r.Method != "HEAD" || r.URL.Path != "/b" || r.URL.RawQuery != "" || r.Host != "b" ||
		!reflect.DeepEqual(r.Header, want) || len(fr.xff) != 0 || r.Context() != t.Context() {
		t.Fatalf("second request: ok %v %s %v host %q header %v xff %q", ok, r.Method, r.URL, r.Host, r.Header, fr.xff)
	}
	b.release()
	head := []byte(first)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, ok := b.parse(head, "192.0.2.1:1"); !ok {
			t.Fatal("declined")
		}
		b.release()
	})
	if allocs > 1 {
		t.Errorf("a plain request costs %.0f allocations; want 1 (its head's text)", allocs)
	}
}

func TestHasBareLF(t *testing.T) {
	for in, want := range map[string]bool{
		"":                                false,
		"GET / HTTP/1.1\r\nHost: a\r\n":   false,
		"GET / HTTP/1.1\r\nHost: a\r":     false,
		"GET / HTTP/1.1\nHost: a\n\n":     true,
		"GET / HTTP/1.1\r\nHost: a\n\r\n": true,
		"\n":                              true,
		"a\r\nb\r\n\n":                    true,
	} {
		if got := hasBareLF([]byte(in)); got != want {
			t.Errorf("hasBareLF(%q) = %v; want %v", in, got, want)
		}
	}
}
