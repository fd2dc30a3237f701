package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// parseSimpleResponse reads the head of the most common upstream response
// without net/http's general parser and its allocations: HTTP/1.1, a
// final status other than 204 and 304 to a request other than HEAD, a body
// framed by one Content-Length, and nothing unusual in the head. For
// anything else (a chunked or close-delimited body, 1xx, obs-fold, a head
// larger than br's buffer, any doubt) ok is false and nothing has been
// consumed: http.ReadResponse then reads the response as it always did.
func parseSimpleResponse(br *bufio.Reader, req *http.Request) (resp *http.Response, ok bool) {
	if req.Method == http.MethodHead {
		return nil, false
	}
	head, ok := peekHead(br)
	if !ok {
		return nil, false
	}
	// Decline a response in one of the cases above before copying its head.
	if len(head) < 12 || string(head[:9]) != "HTTP/1.1 " {
		return nil, false
	}
	// One string holds the whole head: the status and every field value
	// are pieces of it, and their slices share one array.
	text := string(head)
	line, rest, ok := cutLine(text)
	if !ok || len(line) < 12 || (len(line) > 12 && line[12] != ' ') {
		return nil, false
	}
	code, err := strconv.Atoi(line[9:12])
	if err != nil || code < 200 || code > 999 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	if !validFieldValue(line[12:]) {
		return nil, false
	}
	sr := &simpleResponse{}
	resp = &sr.resp
	*resp = http.Response{
		Status:     line[9:],
		StatusCode: code,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, 8),
		Request:    req,
	}
	values := make([]string, 0, strings.Count(rest, "\n"))
	length := int64(-1)
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return nil, false
		}
		if len(line) == 0 {
			break
		}
		name, value, found := strings.Cut(line, ":")
		if !found || !validFieldName(name) {
			return nil, false
		}
		value = trimOWS(value)
		if !validFieldValue(value) {
			return nil, false
		}
		key := canonicalKey(name)
		switch key {
		case "Content-Length":
			if length >= 0 {
				return nil, false // net/http decides on repeated lengths
			}
			n, err := strconv.ParseUint(value, 10, 63)
			if err != nil {
				return nil, false
			}
			length = int64(n)
		case "Transfer-Encoding", "Trailer":
			return nil, false
		case "Connection":
			if hasToken([]string{value}, "close") {
				resp.Close = true
			}
		}
		if vv, ok := resp.Header[key]; ok {
			resp.Header[key] = append(vv, value)
			continue
		}
		values = append(values, value)
		resp.Header[key] = values[len(values)-1 : len(values) : len(values)]
	}
	if length < 0 {
		return nil, false
	}
	if resp.Close {
		delete(resp.Header, "Connection") // as net/http does
	}
	br.Discard(len(head))
	resp.ContentLength = length
	if length == 0 {
		resp.Body = http.NoBody
	} else {
		sr.body = lengthBody{br: br, n: length}
		resp.Body = &sr.body
	}
	return resp, true
}

// simpleResponse is a response and its body in one allocation.
type simpleResponse struct {
	resp http.Response
	body lengthBody
}

// peekHead returns the buffered bytes up to and including the empty line
// that ends a head, reading more while the buffer has room; false when
// the head does not fit in the buffer or the read fails (net/http's
// parser then reports the failure).
func peekHead(br *bufio.Reader) ([]byte, bool) {
	for {
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4], true
		}
		if len(b) == br.Size() {
			return nil, false
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return nil, false
		}
	}
}

// lengthBody is a body of n bytes read from br.
type lengthBody struct {
	br *bufio.Reader
	n  int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if b.n > 0 && err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if b.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
