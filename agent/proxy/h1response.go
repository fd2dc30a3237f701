package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// parseSimpleResponse reads the head of the most common upstream response
// without net/http's general parser and its allocations: HTTP/1.1, a
// final status other than 204 and 304 to a request other than HEAD, a body
// framed by one Content-Length, and nothing unusual in the head. For
// anything else (a chunked or close-delimited body, 1xx, obs-fold, a head
// larger than br's buffer, any doubt) ok is false and nothing has been
// consumed: http.ReadResponse then reads the response as it always did.
//
// The response is built in rb, or in a new responseBuf when rb is nil.
func parseSimpleResponse(br *bufio.Reader, req *http.Request, rb *responseBuf) (resp *http.Response, ok bool) {
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
	if rb == nil {
		rb = new(responseBuf)
	}
	header := rb.fields.reset(rest)
	length := int64(-1)
	closing := false
	fields := fieldScanner{rest: rest}
	for fields.next() {
		switch fields.key {
		case "Content-Length":
			if length >= 0 {
				return nil, false // net/http decides on repeated lengths
			}
			n, err := strconv.ParseUint(fields.value, 10, 63)
			if err != nil {
				return nil, false
			}
			length = int64(n)
		case "Transfer-Encoding", "Trailer":
			return nil, false
		case "Connection":
			if hasToken([]string{fields.value}, "close") {
				closing = true
			}
		}
		rb.fields.add(fields.key, fields.value)
	}
	if fields.bad || length < 0 {
		return nil, false
	}
	if closing {
		delete(header, "Connection") // as net/http does
	}
	br.Discard(len(head))
	rb.resp = http.Response{
		Status:        line[9:],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          http.NoBody,
		ContentLength: length,
		Close:         closing,
		Request:       req,
	}
	if length > 0 {
		rb.body = lengthBody{br: br, n: length}
		rb.resp.Body = &rb.body
	}
	return &rb.resp, true
}

// responseBuf is where an upstream response is built: the response, its
// header and its body readers. A fast-path connection reuses one from
// request to request (release), so nothing may keep the response, its
// header or its body past the request's end.
type responseBuf struct {
	resp   http.Response
	fields headerBuf
	body   lengthBody
	h1     h1Body
}

// release drops the references the last response left.
func (b *responseBuf) release() {
	b.fields.release()
	b.resp = http.Response{}
	b.body = lengthBody{}
	b.h1 = h1Body{}
}

// peekHead returns the buffered bytes up to and including the empty line
// that ends a head, reading more while the buffer has room; false when
// the head does not fit in the buffer, has a line ended by LF alone, or
// the read fails (net/http's parser then reads it or reports the failure).
func peekHead(br *bufio.Reader) ([]byte, bool) {
	for {
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4], true
		}
		if len(b) == br.Size() || hasBareLF(b) {
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
