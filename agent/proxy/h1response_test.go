package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"testing"
)

func TestParseSimpleResponse(t *testing.T) {
	get := &http.Request{Method: http.MethodGet}
	br := bufio.NewReader(bytes.NewReader([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")))
	resp, ok := parseSimpleResponse(br, get, nil)
	if !ok {
		t.Fatal("a plain 200 was declined")
	}
	body, err := io.ReadAll(resp.Body)
	want := http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"5"}, "Set-Cookie": {"a=1", "b=2"}}
	if err != nil || string(body) != "hello" || resp.StatusCode != 200 || resp.Status != "200 OK" || resp.ContentLength != 5 || resp.Close || !reflect.DeepEqual(resp.Header, want) {
		t.Errorf("got %d %q %q, length %d, close %v, header %v, %v", resp.StatusCode, resp.Status, body, resp.ContentLength, resp.Close, resp.Header, err)
	}
	resp, ok = parseSimpleResponse(br, get, nil)
	if !ok || resp.StatusCode != 404 || resp.Body != http.NoBody || !resp.Close || resp.Header.Get("Connection") != "" {
		t.Errorf("second response: ok %v, %+v", ok, resp)
	}

	declined := map[string]string{
		"chunked":         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"no length":       "HTTP/1.1 200 OK\r\n\r\nuntil close",
		"two lengths":     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"signed length":   "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
		"HTTP/1.0":        "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"early hints":     "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
		"204":             "HTTP/1.1 204 No Content\r\n\r\n",
		"304":             "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
		"obs-fold":        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"bare LF":         "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"bad name":        "HTTP/1.1 200 OK\r\nX Y: a\r\nContent-Length: 0\r\n\r\n",
		"control in text": "HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
		"short status":    "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
		"trailer":         "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 0\r\n\r\n",
		"incomplete head": "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
	}
	for name, in := range declined {
		br := bufio.NewReader(bytes.NewReader([]byte(in)))
		if _, ok := parseSimpleResponse(br, get, nil); ok {
			t.Errorf("%s: taken; want it left to net/http", name)
		}
		if br.Buffered() != len(in) && len(in) < 4096 {
			t.Errorf("%s: %d bytes consumed on the way out", name, len(in)-br.Buffered())
		}
	}
	if _, ok := parseSimpleResponse(bufio.NewReader(bytes.NewReader([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"))), &http.Request{Method: http.MethodHead}, nil); ok {
		t.Error("the response to a HEAD was taken")
	}
}

// FuzzParseSimpleResponse checks the simple parser against net/http's:
// whatever it takes, net/http reads alike, up to the body's last byte.
func FuzzParseSimpleResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 502 Bad Gateway\r\nConnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n",
		"HTTP/1.1 200 \r\nX-A:  b \r\nX-A: c\r\nContent-Length: 3\r\n\r\nabcdef",
	} {
		f.Add([]byte(s))
	}
	// Each input is read into a buffer that held another response, which
	// must leave nothing behind.
	before := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Before: 1\r\nSet-Cookie: a=1\r\n\r\n")
	f.Fuzz(func(t *testing.T, in []byte) {
		req := &http.Request{Method: http.MethodGet}
		var rb responseBuf
		if _, ok := parseSimpleResponse(bufio.NewReader(bytes.NewReader(before)), req, &rb); !ok {
			t.Fatal("the response before was declined")
		}
		resp, ok := parseSimpleResponse(bufio.NewReader(bytes.NewReader(in)), req, &rb)
		if !ok {
			return
		}
		ref, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), req)
		if err != nil {
			t.Fatalf("taken %q, which net/http refuses: %v", in, err)
		}
		if resp.StatusCode != ref.StatusCode || resp.ContentLength != ref.ContentLength || resp.Close != ref.Close ||
			resp.ProtoMajor != ref.ProtoMajor || resp.ProtoMinor != ref.ProtoMinor || !reflect.DeepEqual(resp.Header, ref.Header) {
			t.Fatalf("%q: got %d length %d close %v %v; net/http %d length %d close %v %v", in,
				resp.StatusCode, resp.ContentLength, resp.Close, resp.Header, ref.StatusCode, ref.ContentLength, ref.Close, ref.Header)
		}
		got, gotErr := io.ReadAll(resp.Body)
		want, wantErr := io.ReadAll(ref.Body)
		if !bytes.Equal(got, want) || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: body %q, %v; net/http %q, %v", in, got, gotErr, want, wantErr)
		}
	})
}

func TestResponseBufReuse(t *testing.T) {
	get := &http.Request{Method: http.MethodGet}
	first := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\nX-A: 1\r\n\r\nok")
	var rb responseBuf
	resp, ok := parseSimpleResponse(bufio.NewReader(bytes.NewReader(first)), get, &rb)
	if !ok || resp != &rb.resp || len(resp.Header) != 4 {
		t.Fatalf("first response: ok %v, built in the buffer %v, header %v", ok, resp == &rb.resp, resp.Header)
	}
	resp.Header["Set-Cookie"] = append(resp.Header["Set-Cookie"], "appended") // must not write into the next value
	rb.release()
	if rb.resp.Header != nil || rb.fields.values[:cap(rb.fields.values)][0] != "" {
		t.Error("release kept the last response's header")
	}
	resp, ok = parseSimpleResponse(bufio.NewReader(bytes.NewReader([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\nX-B: 2\r\n\r\n"))), get, &rb)
	want := http.Header{"Content-Length": {"0"}, "X-B": {"2"}}
	if !ok || resp.StatusCode != 404 || resp.Status != "404 Not Found" || !resp.Close || resp.Body != http.NoBody || !reflect.DeepEqual(resp.Header, want) {
		t.Fatalf("second response: ok %v, %q close %v body %v header %v", ok, resp.Status, resp.Close, resp.Body, resp.Header)
	}
	rb.release()
	br := bufio.NewReader(nil)
	r := bytes.NewReader(first)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(first)
		br.Reset(r)
		if _, ok := parseSimpleResponse(br, get, &rb); !ok {
			t.Fatal("declined")
		}
		rb.release()
	})
	if allocs > 1 {
		t.Errorf("a simple response costs %.0f allocations; want 1 (its head's text)", allocs)
	}
}
