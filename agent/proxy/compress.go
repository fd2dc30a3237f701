package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
)

// Compression gzips the nodes' responses for clients that accept it, as
// NGINX's gzip module does: only the media types listed, only responses
// that are not encoded already and are at least a minimum length, never a
// range (206) and never what the node marked "no-transform". A response
// that could be compressed gets "Vary: Accept-Encoding" whether or not
// this client takes gzip, so that a cache keeps the two apart; a
// compressed one loses its Content-Length and Accept-Ranges (the length
// is no longer known, and ranges of the node's bytes do not fit the
// compressed ones), and its strong ETag becomes weak (the bytes differ,
// the content is the same). Build it with NewCompression; nil compresses
// nothing.
type Compression struct {
	minLength int64
	max       int64           // responses compressed at once at most
	active    atomic.Int64    // responses being compressed
	exact     map[string]bool // media types, lower case
	prefixes  []string        // "text/" for "text/*"
	writers   sync.Pool       // *gzipWriter
}

// NewCompression builds gzip compression at level (1, fastest, to 9,
// smallest) for responses of the media types given ("text/html", or
// "text/*" for every subtype) of at least minLength bytes (a response of
// unknown length always qualifies), maxConcurrent of them at once at most.
//
// A compressor holds about 1 MiB for as long as its response takes to
// send, so a client that reads slowly holds one that long. Beyond
// maxConcurrent, responses go out uncompressed rather than wait or take
// memory without bound.
func NewCompression(level int, minLength int64, types []string, maxConcurrent int) (*Compression, error) {
	if level < gzip.BestSpeed || level > gzip.BestCompression {
		return nil, fmt.Errorf("level %d: want 1 (fastest) to 9 (smallest)", level)
	}
	if minLength < 0 {
		return nil, fmt.Errorf("min_length %d: must not be negative (0 compresses every length)", minLength)
	}
	if maxConcurrent < 1 {
		return nil, fmt.Errorf("max_concurrent %d: want at least 1", maxConcurrent)
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("types: empty; list the media types to compress, such as text/html and application/json")
	}
	c := &Compression{minLength: minLength, max: int64(maxConcurrent), exact: make(map[string]bool)}
	for _, t := range types {
		mt := strings.ToLower(strings.TrimSpace(t))
		typ, sub, ok := strings.Cut(mt, "/")
		if !ok || !validToken(typ) || !(sub == "*" || validToken(sub)) {
			return nil, fmt.Errorf("types: %q is not a media type; write type/subtype (text/html) or type/* (text/*)", t)
		}
		if typ == "*" {
			// Images, video, archives and fonts are compressed already:
			// gzipping them costs CPU and gains nothing.
			return nil, fmt.Errorf("types: %q would gzip what is compressed already (images, archives); list the types, such as text/*", t)
		}
		if sub == "*" {
			c.prefixes = append(c.prefixes, typ+"/")
		} else {
			c.exact[mt] = true
		}
	}
	c.writers.New = func() any {
		w := new(gzipWriter)
		w.zw, _ = gzip.NewWriterLevel(w, level) // level is checked above
		return w
	}
	return c, nil
}

// validToken reports whether s is an RFC 9110 token, as media type parts
// are.
func validToken(s string) bool {
	return s != "" && validFieldName(s)
}

// matches reports whether the Content-Type value ct is one to compress.
func (c *Compression) matches(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if c.exact[mt] {
		return true
	}
	if mt == "text/event-stream" {
		// Only by name: an event stream holds its compressor (and one of
		// max_concurrent) for as long as it stays open, hours perhaps.
		return false
	}
	for _, p := range c.prefixes {
		if strings.HasPrefix(mt, p) && len(mt) > len(p) {
			return true
		}
	}
	return false
}

// Values shared by every response that gets them; capped, so that an
// append by anyone copies them.
var (
	gzipEncoding       = []string{"gzip"}[:1:1]
	varyAcceptEncoding = "Accept-Encoding"
)

// apply compresses resp, the node's answer to req, when both allow it:
// it rewrites resp's header and wraps its body. resp must not be a
// switch of protocols.
func (c *Compression) apply(req *http.Request, resp *http.Response, m *Metrics) {
	if c == nil {
		return
	}
	switch code := resp.StatusCode; {
	case code < 200, code == http.StatusNoContent, code == http.StatusPartialContent, code == http.StatusNotModified:
		return
	}
	h := resp.Header
	if _, ok := h["Content-Encoding"]; ok {
		return // the node encoded it (or said "identity" on purpose)
	}
	ct := h["Content-Type"]
	if len(ct) == 0 || !c.matches(ct[0]) {
		return
	}
	length := resp.ContentLength
	if req.Method == http.MethodHead {
		// A HEAD response's length is the GET's, and only in the header.
		length = -1
		if cl := h["Content-Length"]; len(cl) == 1 {
			if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil {
				length = n
			}
		}
	}
	if length >= 0 && length < c.minLength {
		return
	}
	if hasToken(h["Cache-Control"], "no-transform") {
		return
	}
	if vary := h["Vary"]; !hasToken(vary, varyAcceptEncoding) && !hasToken(vary, "*") {
		h["Vary"] = append(vary[:len(vary):len(vary)], varyAcceptEncoding)
	}
	head := req.Method == http.MethodHead
	if !head && (resp.Body == nil || resp.Body == http.NoBody) {
		return // nothing to compress, and an empty body is no gzip stream
	}
	if !acceptsGzip(req.Header["Accept-Encoding"]) {
		return
	}
	if !head && !c.acquire() {
		if m != nil {
			m.compressionBusy.Inc()
		}
		return // as the node sent it
	}
	h["Content-Encoding"] = gzipEncoding
	delete(h, "Content-Length")
	delete(h, "Accept-Ranges")
	if et := h["Etag"]; len(et) == 1 && strings.HasPrefix(et[0], `"`) {
		h["Etag"] = []string{"W/" + et[0]}
	}
	streaming := resp.ContentLength < 0
	resp.ContentLength = -1
	if head {
		return // the header says what a GET gets
	}
	resp.Body = newGzipBody(c, resp.Body, streaming, m)
}

// acquire takes one of the max slots for a compressed body, which gives
// it back when closed; false when all are taken.
func (c *Compression) acquire() bool {
	if c.active.Add(1) > c.max {
		c.active.Add(-1)
		return false
	}
	return true
}

// acceptsGzip reports whether an Accept-Encoding field takes gzip: gzip
// (or x-gzip) listed with a weight above 0, or "*" with one and gzip not
// refused by name.
func acceptsGzip(values []string) bool {
	star := false
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(elem, ";")
			coding = strings.TrimSpace(coding)
			switch {
			case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
				return positiveWeight(params)
			case coding == "*":
				star = positiveWeight(params)
			}
		}
	}
	return star
}

// positiveWeight reports whether the parameters of an Accept-Encoding
// element give it a weight above 0; without "q=" the weight is 1. A
// weight that does not parse counts as 0: when in doubt, send the node's
// bytes as they are.
func positiveWeight(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return err == nil && q > 0 && q <= 1
	}
	return true
}

// gzipBody is a response body gzipped as it is read. It reads the node's
// bytes into the caller's buffer, compresses them into the writer's out,
// and hands that back in the same buffer: no buffer of its own for the
// input. A streaming body (no length: chunked, server-sent events) is
// flushed to the client after each read from the node, so that what the
// node sent is not held back waiting for more; a body of known length is
// compressed in full blocks.
//
// One reader at a time, as every body. Close returns the compressor to
// its pool; the body itself is not reused, so that a second Close, or a
// Read after Close, cannot touch another response's compressor.
type gzipBody struct {
	src       io.ReadCloser
	w         *gzipWriter // nil once closed
	off       int         // w.out[off:] is still to be read
	err       error       // what Read returns once out is drained: io.EOF at the end
	streaming bool
	in        int64 // bytes read from the node
	sent      int64 // compressed bytes read by the caller
	c         *Compression
	m         *Metrics
}

// gzipWriter is a compressor and the buffer it writes into, pooled: a
// compressor's state is hundreds of KiB.
type gzipWriter struct {
	zw  *gzip.Writer // writes into out (Write)
	out []byte
}

// Write is the gzip.Writer's sink.
func (w *gzipWriter) Write(p []byte) (int, error) {
	w.out = append(w.out, p...)
	return len(p), nil
}

// newGzipBody compresses src with a slot the caller has acquired.
func newGzipBody(c *Compression, src io.ReadCloser, streaming bool, m *Metrics) *gzipBody {
	w := c.writers.Get().(*gzipWriter)
	w.out = w.out[:0]
	w.zw.Reset(w)
	return &gzipBody{src: src, w: w, streaming: streaming, c: c, m: m}
}

var errReadAfterClose = errors.New("read of a compressed body after Close")

func (b *gzipBody) Read(p []byte) (int, error) {
	w := b.w
	if w == nil {
		return 0, errReadAfterClose
	}
	if len(p) == 0 {
		return 0, nil
	}
	for b.off == len(w.out) {
		w.out, b.off = w.out[:0], 0
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.src.Read(p)
		if n > 0 {
			b.in += int64(n)
			w.zw.Write(p[:n]) // into out: cannot fail
			if b.streaming {
				w.zw.Flush()
			}
		}
		switch {
		case err == io.EOF:
			w.zw.Close() // the last block and the gzip trailer, into out
			b.err = io.EOF
		case err != nil:
			b.err = err // after what was compressed so far
		}
	}
	n := copy(p, w.out[b.off:])
	b.off += n
	b.sent += int64(n)
	return n, nil
}

// maxPooledOut is the largest output buffer kept for the next body.
const maxPooledOut = 64 << 10

func (b *gzipBody) Close() error {
	w := b.w
	if w == nil {
		return nil
	}
	b.w = nil
	err := b.src.Close()
	if m := b.m; m != nil {
		m.compressed.Inc()
		m.compressionIn.Add(float64(b.in))
		m.compressionOut.Add(float64(b.sent))
	}
	if cap(w.out) > maxPooledOut {
		w.out = nil
	}
	b.c.writers.Put(w)
	b.c.active.Add(-1)
	return err
}
