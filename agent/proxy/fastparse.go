package proxy

import (
	"bytes"
	"context"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// The fast path (fast.go) serves the common HTTP/1.1 request itself: one
// without a body, or with a small one framed by Content-Length, such as a
// Flowable REST call's JSON. parseFastRequest recognizes such a request in
// a complete request head. It accepts a strict subset of HTTP/1.1 and
// declines everything else, which then goes to net/http's server with the
// rest of the connection: net/http answers malformed and ambiguous
// requests (400, 431, 505), chunked and large bodies, Expect, upgrades and
// absolute-form targets exactly as it does without the fast path. So the
// fast path never needs to judge a request it is unsure of. Its one
// framing rule is the strictest there is: a body only with exactly one
// Content-Length field of plain digits, at most fastMaxBody, and no
// Transfer-Encoding; anything else about framing (a list, a sign, a second
// field, Transfer-Encoding in any form) is declined, and the body goes
// upstream with a Content-Length flowgate writes itself.

// fastMaxBody is the largest request body the fast path takes. It reads a
// body whole before the request goes upstream, as NGINX buffers one in its
// client_body_buffer_size (16 KiB on 64-bit systems), so that the request
// goes out in one write and can go to another upstream if the first
// cannot be reached.
const fastMaxBody = 16 << 10

// fastRequest is what the fast path needs of a recognized request beyond
// the http.Request.
type fastRequest struct {
	// xff are the X-Forwarded-For values the client sent; they are not in
	// the request's header, which holds only what goes upstream.
	xff []string
	// close: the client asked to close the connection after the response.
	close bool
	// contentLength is the length of the body that follows the head, at
	// most fastMaxBody; 0 without one.
	contentLength int64
}

// requestBuf is what a fast-path connection reuses from one request to
// the next, so that a request costs one allocation for its head's text and
// one for its URL: the request, its header map and the slices of its field
// values. Nothing may keep the request, its header or its values past the
// request's end (release).
type requestBuf struct {
	base   http.Request // a zero request but for its context
	req    http.Request
	url    url.URL
	fields headerBuf
	xff    []string
}

// newRequestBuf returns a requestBuf whose requests carry ctx.
func newRequestBuf(ctx context.Context) *requestBuf {
	b := &requestBuf{}
	b.base = *new(http.Request).WithContext(ctx)
	return b
}

// release drops the references the last request left, so that an idle
// connection keeps no request text alive.
func (b *requestBuf) release() {
	b.fields.release()
	clear(b.xff[:cap(b.xff)])
	b.req = http.Request{}
	b.url = url.URL{}
}

// parseFastRequest parses head, a request head ending in an empty line,
// into a request whose Header holds what is to be forwarded: the client's
// fields less the hop-by-hop ones and the forwarding fields flowgate sets
// itself. ok is false when the request is not for the fast path.
func parseFastRequest(head []byte, remoteAddr string) (r *http.Request, fr fastRequest, ok bool) {
	return newRequestBuf(context.Background()).parse(head, remoteAddr)
}

// parse is parseFastRequest into b: the request it returns is b's, valid
// until release or the next parse.
func (b *requestBuf) parse(head []byte, remoteAddr string) (r *http.Request, fr fastRequest, ok bool) {
	// One string holds the whole head: the target, the host and every
	// field value are pieces of it.
	text := string(head)
	line, rest, ok := cutLine(text)
	if !ok {
		return nil, fr, false
	}
	method, target, ok := splitRequestLine(line)
	if !ok {
		return nil, fr, false
	}
	u := &b.url
	if !parsePlainTarget(u, target) {
		parsed, err := url.ParseRequestURI(target)
		if err != nil {
			return nil, fr, false
		}
		u = parsed
	}
	r = &b.req
	*r = b.base
	r.Method = method
	r.URL = u
	r.Proto = "HTTP/1.1"
	r.ProtoMajor, r.ProtoMinor = 1, 1
	r.Header = b.fields.reset(rest)
	r.Body = http.NoBody
	r.RemoteAddr = remoteAddr
	r.RequestURI = target
	fr.xff = b.xff[:0]
	hosts, lengths := 0, 0
	fields := fieldScanner{rest: rest}
	for fields.next() {
		key, value := fields.key, fields.value
		switch key {
		case "Host":
			hosts++
			if hosts > 1 || !validHost(value) {
				return nil, fr, false
			}
			r.Host = value
			continue
		case "Connection":
			// keep-alive and close only: any other token names a hop-by-hop
			// header or asks for an upgrade.
			for t := range strings.SplitSeq(value, ",") {
				switch t = trimOWS(t); {
				case len(t) == 0, strings.EqualFold(t, "keep-alive"):
				case strings.EqualFold(t, "close"):
					fr.close = true
				default:
					return nil, fr, false
				}
			}
			continue
		case "Content-Length":
			n, ok := parseContentLength(value)
			if !ok || lengths > 0 || n > fastMaxBody {
				return nil, fr, false
			}
			lengths++
			fr.contentLength = n
			continue // written upstream from the body itself
		case "Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer", "Http2-Settings":
			return nil, fr, false
		case "X-Forwarded-For":
			fr.xff = append(fr.xff, value)
			continue
		case "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
			"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-Ip":
			// Hop-by-hop, or set by flowgate from what it knows itself.
			continue
		}
		b.fields.add(key, value)
	}
	b.xff = fr.xff
	if fields.bad || hosts != 1 || len(fields.rest) != 0 {
		return nil, fr, false
	}
	r.ContentLength = fr.contentLength
	if _, ok := r.Header["User-Agent"]; !ok {
		// A request without one is sent without one (net/http would add
		// its own).
		r.Header["User-Agent"] = emptyValue
	}
	return r, fr, true
}

// parsePlainTarget reads an origin-form target made of the characters a
// URL path keeps unescaped, and any query, into u, as url.ParseRequestURI
// would; false for anything else, which url.ParseRequestURI then reads.
func parsePlainTarget(u *url.URL, target string) bool {
	path, query, hasQuery := strings.Cut(target, "?")
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '/', c == '-', c == '_', c == '.', c == '~',
			c == '$', c == '&', c == '+', c == ',', c == ':', c == ';', c == '=', c == '@':
		default:
			return false
		}
	}
	if hasQuery && strings.Contains(query, "?") && query[len(query)-1] == '?' {
		return false // url.ParseRequestURI splits this one otherwise
	}
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	return true
}

// emptyValue is a field with an empty value, which Request.Write leaves
// out. It is shared: nothing may append to it.
var emptyValue = []string{""}

// hasBareLF reports whether b has a line ended by LF alone. A head with
// one never shows the "\r\n\r\n" that ends a strict one; net/http's
// parsers, which take a bare LF as a line end (RFC 9112 section 2.2),
// read it instead.
func hasBareLF(b []byte) bool {
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if i == 0 || b[i-1] != '\r' {
			return true
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// cutLine cuts a CRLF-terminated line off b. A bare LF or CR declines the
// request.
func cutLine(b string) (line, rest string, ok bool) {
	i := strings.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return "", "", false
	}
	line = b[:i-1]
	if strings.IndexByte(line, '\r') >= 0 {
		return "", "", false
	}
	return line, b[i+1:], true
}

// fieldScanner reads the field lines of a head one at a time, up to the
// empty line that ends it.
type fieldScanner struct {
	rest       string // the head after the last line read
	key, value string // the last field read: its canonical name, its value without surrounding whitespace
	bad        bool   // a line was not a valid field, or the head ended without its empty line
}

// next reads the next field line; false at the empty line that ends the
// head, or at a line that is not a valid field (bad then): an invalid name
// or value, or an obs-fold, whose line starts with a space.
func (s *fieldScanner) next() bool {
	line, rest, ok := cutLine(s.rest)
	if !ok {
		s.bad = true
		return false
	}
	s.rest = rest
	if len(line) == 0 {
		return false
	}
	name, value, found := strings.Cut(line, ":")
	if !found || !validFieldName(name) {
		s.bad = true
		return false
	}
	value = trimOWS(value)
	if !validFieldValue(value) {
		s.bad = true
		return false
	}
	s.key, s.value = canonicalKey(name), value
	return true
}

// headerBuf is a header map and the array that its fields' one-value
// slices share, reused from one head to the next.
type headerBuf struct {
	header http.Header
	values []string
}

// reset empties b for the fields of rest, a head after its first line, and
// returns its header.
func (b *headerBuf) reset(rest string) http.Header {
	if b.header == nil {
		b.header = make(http.Header, 8)
	} else {
		clear(b.header)
	}
	if n := strings.Count(rest, "\n"); cap(b.values) < n {
		b.values = make([]string, 0, n)
	}
	b.values = b.values[:0]
	return b.header
}

// add adds a value to the field key.
func (b *headerBuf) add(key, value string) {
	if vv, ok := b.header[key]; ok {
		b.header[key] = append(vv, value)
		return
	}
	// A one-value slice of values, capped so that an append copies.
	b.values = append(b.values, value)
	n := len(b.values)
	b.header[key] = b.values[n-1 : n : n]
}

// release drops the references to the last head's text.
func (b *headerBuf) release() {
	clear(b.header)
	clear(b.values[:cap(b.values)])
}

// parseContentLength reads a Content-Length value: plain decimal digits,
// at most 18 of them (nothing a sign, a list or a space could hide in).
func parseContentLength(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// fastMethods are the methods the fast path serves, each its own constant
// so that a request's method costs no allocation. CONNECT and TRACE, which
// flowgate refuses, and any other method go to net/http.
var fastMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// splitRequestLine splits "GET /path HTTP/1.1". Only the fastMethods in
// origin form over HTTP/1.1 are for the fast path.
func splitRequestLine(line string) (method, target string, ok bool) {
	m, rest, ok1 := strings.Cut(line, " ")
	t, p, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || p != "HTTP/1.1" {
		return "", "", false
	}
	for _, fm := range fastMethods {
		if m == fm {
			method = fm
			break
		}
	}
	if method == "" {
		return "", "", false
	}
	if len(t) == 0 || t[0] != '/' {
		return "", "", false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return "", "", false
		}
	}
	return method, t, true
}

// validFieldName reports whether b is an RFC 9110 token.
func validFieldName[T string | []byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if !isTokenChar(b[i]) {
			return false
		}
	}
	return len(b) > 0
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validFieldValue allows visible characters, spaces, tabs and obs-text;
// no other control character.
func validFieldValue(b string) bool {
	for i := 0; i < len(b); i++ {
		if c := b[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost allows a host name, an IPv4 address or a bracketed IPv6
// address, with an optional port: letters, digits and ".-_:[]". Anything
// else (net/http answers some of it with 400) is declined.
func validHost(b string) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == '_', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

func trimOWS(b string) string {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey without an allocation
// for the fields browsers send, or a name already in canonical form.
func canonicalKey(name string) string {
	if len(name) <= 32 {
		var lower [32]byte
		for i := 0; i < len(name); i++ {
			c := name[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		if k, ok := commonKeys[string(lower[:len(name)])]; ok {
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

var commonKeys = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Dnt", "Expect",
		"Forwarded", "Host", "If-Modified-Since", "If-None-Match", "Keep-Alive",
		"Origin", "Pragma", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile",
		"Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
		"Sec-Fetch-User", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Upgrade-Insecure-Requests", "User-Agent", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Proto", "X-Real-Ip",
		"X-Requested-With", "Http2-Settings",
		// Response fields.
		"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Age",
		"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Security-Policy",
		"Date", "Etag", "Expires", "Last-Modified", "Location", "Referrer-Policy", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Vary", "Www-Authenticate",
		"X-Content-Type-Options", "X-Frame-Options", "X-Xss-Protection",
	} {
		lower := []byte(k)
		for i, c := range lower {
			if c >= 'A' && c <= 'Z' {
				lower[i] = c + 'a' - 'A'
			}
		}
		m[string(lower)] = textproto.CanonicalMIMEHeaderKey(k)
	}
	return m
}()
