package proxy

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
)

// The fast path (fast.go) serves the common HTTP/1.1 request itself: a GET
// or HEAD without a body. parseFastRequest recognizes such a request in a
// complete request head. It accepts a strict subset of HTTP/1.1 and
// declines everything else, which then goes to net/http's server with the
// rest of the connection: net/http answers malformed and ambiguous
// requests (400, 431, 505), bodies, Expect, upgrades and absolute-form
// targets exactly as it does without the fast path. So the fast path never
// needs to judge a request it is unsure of, and no request smuggling
// defence lives here: a request with any framing header (Content-Length,
// Transfer-Encoding) is declined.

// fastRequest is what the fast path needs of a recognized request beyond
// the http.Request.
type fastRequest struct {
	// xff are the X-Forwarded-For values the client sent; they are not in
	// the request's header, which holds only what goes upstream.
	xff []string
	// close: the client asked to close the connection after the response.
	close bool
}

// parseFastRequest parses head, a request head ending in an empty line,
// into a request whose Header holds what is to be forwarded: the client's
// fields less the hop-by-hop ones and the forwarding fields flowgate sets
// itself. ok is false when the request is not for the fast path.
func parseFastRequest(head []byte, remoteAddr string) (r *http.Request, fr fastRequest, ok bool) {
	line, rest, ok := cutLine(head)
	if !ok {
		return nil, fr, false
	}
	method, target, proto, ok := splitRequestLine(line)
	if !ok {
		return nil, fr, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, fr, false
	}
	r = &http.Request{
		Method:     method,
		URL:        u,
		Proto:      proto,
		ProtoMajor: 1,
		ProtoMinor: 1,
		// Room for what most clients send plus the forwarding fields
		// without growing; a larger hint costs more than it saves.
		Header:     make(http.Header, 8),
		Body:       http.NoBody,
		RemoteAddr: remoteAddr,
		RequestURI: target,
	}
	hosts := 0
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return nil, fr, false
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validFieldName(line[:colon]) {
			return nil, fr, false // also an obs-fold: it starts with a space
		}
		value := trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return nil, fr, false
		}
		key := canonicalKey(line[:colon])
		switch key {
		case "Host":
			hosts++
			if hosts > 1 || !validHost(value) {
				return nil, fr, false
			}
			r.Host = string(value)
			continue
		case "Connection":
			// keep-alive and close only: any other token names a hop-by-hop
			// header or asks for an upgrade.
			for t := range bytes.SplitSeq(value, []byte(",")) {
				switch t = trimOWS(t); {
				case len(t) == 0, bytes.EqualFold(t, []byte("keep-alive")):
				case bytes.EqualFold(t, []byte("close")):
					fr.close = true
				default:
					return nil, fr, false
				}
			}
			continue
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer", "Http2-Settings":
			return nil, fr, false
		case "X-Forwarded-For":
			fr.xff = append(fr.xff, string(value))
			continue
		case "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
			"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-Ip":
			// Hop-by-hop, or set by flowgate from what it knows itself.
			continue
		}
		r.Header[key] = append(r.Header[key], string(value))
	}
	if hosts != 1 || len(rest) != 0 {
		return nil, fr, false
	}
	if _, ok := r.Header["User-Agent"]; !ok {
		// A request without one is sent without one (net/http would add
		// its own).
		r.Header["User-Agent"] = emptyValue
	}
	return r, fr, true
}

// emptyValue is a field with an empty value, which Request.Write leaves
// out. It is shared: nothing may append to it.
var emptyValue = []string{""}

// cutLine cuts a CRLF-terminated line off b. A bare LF or CR declines the
// request.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

// splitRequestLine splits "GET /path HTTP/1.1". Only GET and HEAD in
// origin form over HTTP/1.1 are for the fast path.
func splitRequestLine(line []byte) (method, target, proto string, ok bool) {
	m, rest, ok1 := bytes.Cut(line, []byte(" "))
	t, p, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || string(p) != "HTTP/1.1" {
		return "", "", "", false
	}
	switch string(m) {
	case http.MethodGet:
		method = http.MethodGet
	case http.MethodHead:
		method = http.MethodHead
	default:
		return "", "", "", false
	}
	if len(t) == 0 || t[0] != '/' {
		return "", "", "", false
	}
	for _, c := range t {
		if c <= ' ' || c >= 0x7f {
			return "", "", "", false
		}
	}
	return method, string(t), "HTTP/1.1", true
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
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost allows a host name, an IPv4 address or a bracketed IPv6
// address, with an optional port: letters, digits and ".-_:[]". Anything
// else (net/http answers some of it with 400) is declined.
func validHost(b []byte) bool {
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

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey without an allocation
// for the fields browsers send.
func canonicalKey(name []byte) string {
	if len(name) <= 32 {
		var lower [32]byte
		for i, c := range name {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		if k, ok := commonKeys[string(lower[:len(name)])]; ok {
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
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
