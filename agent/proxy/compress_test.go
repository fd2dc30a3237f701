package proxy

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
)

func testCompression(t *testing.T, minLength int64, types ...string) *Compression {
	t.Helper()
	if len(types) == 0 {
		types = []string{"text/html", "application/json", "text/*"}
	}
	c, err := NewCompression(5, minLength, types, 100)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCompressionRejects(t *testing.T) {
	for _, tt := range []struct {
		level int
		min   int64
		types []string
		want  string
	}{
		{0, 0, []string{"text/html"}, "level 0: want 1 (fastest) to 9"},
		{10, 0, []string{"text/html"}, "level 10"},
		{5, -1, []string{"text/html"}, "min_length -1: must not be negative"},
		{5, 0, nil, "types: empty"},
		{5, 0, []string{"html"}, `"html" is not a media type`},
		{5, 0, []string{"text/html; charset=utf-8"}, "is not a media type"},
		{5, 0, []string{"text/"}, "is not a media type"},
		{5, 0, []string{"*/*"}, "compressed already"},
	} {
		_, err := NewCompression(tt.level, tt.min, tt.types, 1)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewCompression(%d, %d, %q): got %v; want an error with %q", tt.level, tt.min, tt.types, err, tt.want)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for ae, want := range map[string]bool{
		"":                        false,
		"gzip":                    true,
		"GZIP":                    true,
		"gzip, deflate, br, zstd": true,
		"br;q=1.0, gzip;q=0.8":    true,
		"x-gzip":                  true,
		"gzip;q=0":                false,
		"gzip; q=0.000":           false,
		"gzip;q=nonsense":         false,
		"gzip;q=2":                false,
		"*":                       true,
		"*;q=0":                   false,
		"gzip;q=0, *":             false,
		"*, gzip;q=0":             false,
		"identity":                false,
		"br, zstd":                false,
		"deflate, gzipx":          false,
	} {
		var values []string
		if ae != "" {
			values = []string{ae}
		}
		if got := acceptsGzip(values); got != want {
			t.Errorf("Accept-Encoding %q: got %v; want %v", ae, got, want)
		}
	}
	if !acceptsGzip([]string{"br", "gzip"}) {
		t.Error("gzip in a second Accept-Encoding field: not taken")
	}
}

// apply decides per response, as NGINX's gzip module does, and says
// "Vary: Accept-Encoding" on every response it could have compressed.
func TestCompressionApply(t *testing.T) {
	c := testCompression(t, 100)
	type want struct {
		gzip bool
		vary string // the Vary value(s) after, joined by ", "
	}
	for _, tt := range []struct {
		name   string
		method string
		ae     string
		code   int
		header map[string]string
		length int64 // the response's ContentLength; -1 unknown
		want   want
	}{
		{"html", "GET", "gzip", 200, map[string]string{"Content-Type": "text/html; charset=utf-8"}, 500, want{true, "Accept-Encoding"}},
		{"json, chunked", "GET", "gzip", 200, map[string]string{"Content-Type": "application/json"}, -1, want{true, "Accept-Encoding"}},
		{"type by prefix", "GET", "gzip", 200, map[string]string{"Content-Type": "TEXT/CSS"}, 500, want{true, "Accept-Encoding"}},
		{"error page", "GET", "gzip", 500, map[string]string{"Content-Type": "text/html"}, 500, want{true, "Accept-Encoding"}},
		{"client takes no gzip", "GET", "br", 200, map[string]string{"Content-Type": "text/html"}, 500, want{false, "Accept-Encoding"}},
		{"no Accept-Encoding", "GET", "", 200, map[string]string{"Content-Type": "text/html"}, 500, want{false, "Accept-Encoding"}},
		{"Vary kept", "GET", "gzip", 200, map[string]string{"Content-Type": "text/html", "Vary": "Origin"}, 500, want{true, "Origin, Accept-Encoding"}},
		{"Vary has it", "GET", "gzip", 200, map[string]string{"Content-Type": "text/html", "Vary": "accept-encoding"}, 500, want{true, "accept-encoding"}},
		{"Vary *", "GET", "gzip", 200, map[string]string{"Content-Type": "text/html", "Vary": "*"}, 500, want{true, "*"}},
		{"short", "GET", "gzip", 200, map[string]string{"Content-Type": "text/html"}, 99, want{false, ""}},
		{"image", "GET", "gzip", 200, map[string]string{"Content-Type": "image/png"}, 500, want{false, ""}},
		{"event stream, only by name", "GET", "gzip", 200, map[string]string{"Content-Type": "text/event-stream"}, -1, want{false, ""}},
		{"no type", "GET", "gzip", 200, nil, 500, want{false, ""}},
		{"encoded by the node", "GET", "gzip", 200, map[string]string{"Content-Type": "text/html", "Content-Encoding": "br"}, 500, want{false, ""}},
		{"no-transform", "GET", "gzip", 200, map[string]string{"Content-Type": "text/html", "Cache-Control": "public, no-transform"}, 500, want{false, ""}},
		{"range", "GET", "gzip", 206, map[string]string{"Content-Type": "text/html"}, 500, want{false, ""}},
		{"not modified", "GET", "gzip", 304, map[string]string{"Content-Type": "text/html"}, 0, want{false, ""}},
		{"HEAD", "HEAD", "gzip", 200, map[string]string{"Content-Type": "text/html", "Content-Length": "500"}, 0, want{true, "Accept-Encoding"}},
		{"HEAD, short", "HEAD", "gzip", 200, map[string]string{"Content-Type": "text/html", "Content-Length": "99"}, 0, want{false, ""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "/", nil)
			if tt.ae != "" {
				req.Header.Set("Accept-Encoding", tt.ae)
			}
			resp := &http.Response{StatusCode: tt.code, Header: http.Header{}, ContentLength: tt.length, Body: http.NoBody}
			for k, v := range tt.header {
				resp.Header.Set(k, v)
			}
			resp.Header.Set("Etag", `"v1"`)
			resp.Header.Set("Accept-Ranges", "bytes")
			if tt.method != "HEAD" {
				resp.Body = io.NopCloser(strings.NewReader(strings.Repeat("a", 500)))
				if tt.length >= 0 {
					resp.Header.Set("Content-Length", fmt.Sprint(tt.length))
				}
			}
			c.apply(req, resp, nil)
			if got := strings.Join(resp.Header.Values("Vary"), ", "); got != tt.want.vary {
				t.Errorf("Vary %q; want %q", got, tt.want.vary)
			}
			gzipped := resp.Header.Get("Content-Encoding") == "gzip"
			if gzipped != tt.want.gzip {
				t.Fatalf("Content-Encoding %q; want gzip %v", resp.Header.Get("Content-Encoding"), tt.want.gzip)
			}
			_, isGzip := resp.Body.(*gzipBody)
			if !gzipped {
				if isGzip || resp.Header.Get("Etag") != `"v1"` || resp.Header.Get("Accept-Ranges") != "bytes" {
					t.Errorf("not compressed, yet changed: body %T, header %v", resp.Body, resp.Header)
				}
				return
			}
			if isGzip != (tt.method != "HEAD") {
				t.Errorf("body %T for %s", resp.Body, tt.method)
			}
			if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" || resp.Header.Get("Accept-Ranges") != "" {
				t.Errorf("compressed, yet a length or ranges: %d, %v", resp.ContentLength, resp.Header)
			}
			if got := resp.Header.Get("Etag"); got != `W/"v1"` {
				t.Errorf("ETag %q; want the weak W/\"v1\"", got)
			}
			resp.Body.Close()
		})
	}
}

// pieces is a node's body arriving in pieces, with a check between them.
type pieces struct {
	parts [][]byte
	next  func(i int) // called before piece i is read
	i     int
}

func (p *pieces) Read(b []byte) (int, error) {
	if p.i == len(p.parts) {
		return 0, io.EOF
	}
	if p.next != nil {
		p.next(p.i)
	}
	n := copy(b, p.parts[p.i])
	p.parts[p.i] = p.parts[p.i][n:]
	if len(p.parts[p.i]) == 0 {
		p.i++
	}
	return n, nil
}

func (p *pieces) Close() error { return nil }

// Bodies of every size come out as gzip of exactly the node's bytes,
// through buffers of any size, with compressors reused from the pool.
func TestGzipBodyRoundTrip(t *testing.T) {
	c := testCompression(t, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	text := []byte(strings.Repeat(`{"id":"proc-1","name":"Review invoice","assignee":"kermit"},`, 4000))
	noise := make([]byte, 200<<10)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	for _, size := range []int{0, 1, 100, 32 << 10, 100 << 10, len(text)} {
		for _, src := range [][]byte{text, noise} {
			data := src[:min(size, len(src))]
			for _, streaming := range []bool{false, true} {
				var parts [][]byte
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 1+rng.IntN(20<<10))
					parts = append(parts, rest[:n])
					rest = rest[n:]
				}
				b := testGzipBody(t, c, &pieces{parts: parts}, streaming, nil)
				var out bytes.Buffer
				readThrough(t, b, make([]byte, 1+rng.IntN(40<<10)), &out)
				got := gunzip(t, out.Bytes())
				if !bytes.Equal(got, data) {
					t.Fatalf("size %d streaming %v: got %d bytes back, not the %d sent", size, streaming, len(got), len(data))
				}
				if bytes.Equal(src, text) && size >= 32<<10 && out.Len() > len(data)/5 {
					t.Errorf("size %d streaming %v: %d bytes compressed to %d; JSON compresses better than 5:1", size, streaming, len(data), out.Len())
				}
			}
		}
	}
}

// testGzipBody is newGzipBody with its slot acquired, as apply does.
func testGzipBody(t testing.TB, c *Compression, src io.ReadCloser, streaming bool, m *Metrics) *gzipBody {
	t.Helper()
	if !c.acquire() {
		t.Fatal("no compression slot left")
	}
	return newGzipBody(c, src, streaming, m)
}

// readThrough reads b to its end through buf, as a server copies a body,
// into out, then closes it.
func readThrough(t *testing.T, b io.ReadCloser, buf []byte, out *bytes.Buffer) {
	t.Helper()
	for {
		n, err := b.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip stream: %v", err)
	}
	return out
}

// A streaming body hands on each piece of the node's as soon as it came:
// what the client has read before the next piece arrives decompresses to
// every piece so far.
func TestGzipBodyStreamsEachPiece(t *testing.T) {
	c := testCompression(t, 0)
	parts := [][]byte{[]byte("data: one\n\n"), []byte("data: two\n\n"), []byte("data: three\n\n")}
	var out bytes.Buffer
	src := &pieces{parts: parts}
	src.next = func(i int) {
		// Before piece i is read, the client has pieces 0..i-1 whole.
		zr := gzip.NewReader
		r, err := zr(bytes.NewReader(out.Bytes()))
		if err != nil {
			if i == 0 {
				return
			}
			t.Fatalf("before piece %d: %v", i, err)
		}
		got, _ := io.ReadAll(r) // unexpected EOF: the stream goes on
		want := ""
		for _, p := range []string{"data: one\n\n", "data: two\n\n", "data: three\n\n"}[:i] {
			want += p
		}
		if string(got) != want {
			t.Errorf("before piece %d the client could read %q; want %q", i, got, want)
		}
	}
	readThrough(t, testGzipBody(t, c, src, true, nil), make([]byte, 4096), &out)
	if got := gunzip(t, out.Bytes()); string(got) != "data: one\n\ndata: two\n\ndata: three\n\n" {
		t.Errorf("whole stream %q", got)
	}
}

// A second Close, or a Read after Close, leaves the pooled compressor
// alone: it may serve another response by then.
func TestGzipBodyAfterClose(t *testing.T) {
	c := testCompression(t, 0)
	b := testGzipBody(t, c, io.NopCloser(strings.NewReader("hello")), false, nil)
	b.Close()
	other := testGzipBody(t, c, io.NopCloser(strings.NewReader(strings.Repeat("x", 1000))), false, nil)
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := b.Read(make([]byte, 10)); err != errReadAfterClose {
		t.Errorf("Read after Close: %v; want errReadAfterClose", err)
	}
	out, err := io.ReadAll(other)
	if err != nil {
		t.Fatal(err)
	}
	if got := gunzip(t, out); len(got) != 1000 {
		t.Errorf("the other body: %d bytes back; want 1000", len(got))
	}
	other.Close()
}

// End to end on each path into the proxy: a client that takes gzip gets
// the node's page gzipped, one that does not gets it as it was, and a
// streamed response reaches the client piece by piece.
func TestCompressionViaEachPath(t *testing.T) {
	page := strings.Repeat("<p>Flowable task list</p>\n", 400)
	up := newBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/page":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("ETag", `"p1"`)
			w.Header().Set("Content-Length", fmt.Sprint(len(page)))
			io.WriteString(w, page)
		case "/png":
			w.Header().Set("Content-Type", "image/png")
			io.WriteString(w, page)
		case "/stream":
			w.Header().Set("Content-Type", "text/plain")
			for i := range 3 {
				fmt.Fprintf(w, "line %d\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
	metrics := NewMetrics(nil)
	p := newTestProxy(t, Options{Compression: testCompression(t, 1024), Metrics: metrics}, up.upstream())
	for name, send := range viaEachPath(t, p) {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "/page", nil)
			req.Header.Set("Accept-Encoding", "gzip, br")
			resp := send(req)
			body, _ := io.ReadAll(resp.Body)
			if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" || resp.Header.Get("Etag") != `W/"p1"` {
				t.Fatalf("gzip client: header %v", resp.Header)
			}
			if got := gunzip(t, body); string(got) != page {
				t.Fatalf("gzip client: %d bytes back; want the page's %d", len(got), len(page))
			}
			if len(body) > len(page)/10 {
				t.Errorf("the page (%d bytes) went out as %d", len(page), len(body))
			}

			req.Header.Set("Accept-Encoding", "identity")
			resp = send(req)
			body, _ = io.ReadAll(resp.Body)
			if resp.Header.Get("Content-Encoding") != "" || string(body) != page || resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("identity client: Content-Encoding %q, Vary %q, %d bytes", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"), len(body))
			}
			if resp.ContentLength != int64(len(page)) {
				t.Errorf("identity client: length %d; want the node's %d", resp.ContentLength, len(page))
			}

			head, _ := http.NewRequest(http.MethodHead, "/page", nil)
			head.Header.Set("Accept-Encoding", "gzip")
			resp = send(head)
			if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Length") != "" {
				t.Errorf("HEAD: header %v; want what a GET gets", resp.Header)
			}

			png, _ := http.NewRequest(http.MethodGet, "/png", nil)
			png.Header.Set("Accept-Encoding", "gzip")
			resp = send(png)
			body, _ = io.ReadAll(resp.Body)
			if resp.Header.Get("Content-Encoding") != "" || string(body) != page {
				t.Errorf("image/png: Content-Encoding %q, %d bytes; want it as it was", resp.Header.Get("Content-Encoding"), len(body))
			}

			stream, _ := http.NewRequest(http.MethodGet, "/stream", nil)
			stream.Header.Set("Accept-Encoding", "gzip")
			resp = send(stream)
			body, _ = io.ReadAll(resp.Body)
			if got := gunzip(t, body); string(got) != "line 0\nline 1\nline 2\n" {
				t.Errorf("stream: %q", got)
			}
		})
	}
	if got := gaugeValue(t, metrics.compressed); got != 6 { // per path: page and stream; HEAD has no body
		t.Errorf("flowgate_compressed_responses_total %v; want 6 (2 per path)", got)
	}
	in, out := gaugeValue(t, metrics.compressionIn), gaugeValue(t, metrics.compressionOut)
	if in < float64(3*len(page)) || out <= 0 || out > in/5 {
		t.Errorf("compression bytes in %v, out %v", in, out)
	}
}

// Beyond max_concurrent, responses go out as the node sent them, counted
// as busy; a slot comes back when its body is closed, and a HEAD takes
// none.
func TestCompressionMaxConcurrent(t *testing.T) {
	c, err := NewCompression(5, 0, []string{"text/html"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	respond := func(method string) *http.Response {
		req, _ := http.NewRequest(method, "/", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/html"}}, ContentLength: -1,
			Body: io.NopCloser(strings.NewReader("<p>page</p>"))}
		if method == http.MethodHead {
			resp.Body = http.NoBody
		}
		c.apply(req, resp, m)
		return resp
	}
	first := respond(http.MethodGet)
	if first.Header.Get("Content-Encoding") != "gzip" {
		t.Fatal("first response: not compressed")
	}
	if head := respond(http.MethodHead); head.Header.Get("Content-Encoding") != "gzip" {
		t.Error("HEAD while one is compressed: not the GET's header")
	}
	second := respond(http.MethodGet)
	if second.Header.Get("Content-Encoding") != "" || second.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("second response while the first is open: header %v; want it uncompressed, with Vary", second.Header)
	}
	if body, _ := io.ReadAll(second.Body); string(body) != "<p>page</p>" {
		t.Errorf("second response: body %q", body)
	}
	if got := gaugeValue(t, m.compressionBusy); got != 1 {
		t.Errorf("flowgate_compression_busy_total %v; want 1", got)
	}
	first.Body.Close()
	first.Body.Close() // a second Close gives back nothing more
	third := respond(http.MethodGet)
	if third.Header.Get("Content-Encoding") != "gzip" {
		t.Error("after the first was closed: not compressed")
	}
	if fourth := respond(http.MethodGet); fourth.Header.Get("Content-Encoding") != "" {
		t.Error("a second Close gave back a slot twice")
	}
	third.Body.Close()
}

// flowableTasks is a page of a Flowable REST task query, as JSON, cut to
// n bytes.
func flowableTasks(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"data":[`)
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":"%08x-%04x","name":%q,"assignee":%q,"processInstanceId":"%d","created":"2026-12-%02dT%02d:%02d:00.000Z","priority":%d,"variables":{"amount":%d,"approved":%v}},`,
			i*7919, i, []string{"Review invoice", "Approve leave", "Check contract"}[i%3], []string{"kermit", "gonzo", "fozzie", "piggy"}[i%4],
			100000+i*13, 1+i%28, i%24, i%60, 50+i%7, i*17, i%2 == 0)
	}
	return b.Bytes()[:n]
}

// BenchmarkGzipBody: a 100 KiB REST answer through a pooled compressor at
// the default level.
func BenchmarkGzipBody(b *testing.B) {
	c, err := NewCompression(5, 0, []string{"application/json"}, 1)
	if err != nil {
		b.Fatal(err)
	}
	data := flowableTasks(100 << 10)
	buf := make([]byte, 32<<10)
	var out int
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		gb := testGzipBody(b, c, io.NopCloser(bytes.NewReader(data)), false, nil)
		out = 0
		for {
			n, err := gb.Read(buf)
			out += n
			if err != nil {
				break
			}
		}
		gb.Close()
	}
	b.ReportMetric(float64(out), "out-bytes")
}

// A GET whose response has no body is left as it is: an empty body is no
// gzip stream.
func TestCompressionEmptyBody(t *testing.T) {
	c := testCompression(t, 0)
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/html"}}, ContentLength: 0, Body: http.NoBody}
	c.apply(req, resp, nil)
	if resp.Header.Get("Content-Encoding") != "" || resp.Body != http.NoBody || c.active.Load() != 0 {
		t.Errorf("empty GET: Content-Encoding %q, body %T, %d slots taken; want it untouched", resp.Header.Get("Content-Encoding"), resp.Body, c.active.Load())
	}
}
