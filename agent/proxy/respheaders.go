package proxy

import (
	"fmt"
	"net/textproto"
	"slices"
	"strings"
)

// ResponseHeaders are header rules for every response to a request for a
// served host, the node's and flowgate's own alike, as NGINX's add_header
// (or HAProxy's http-response set-header) is used for: the security headers
// a front door adds (X-Frame-Options, X-Content-Type-Options,
// Content-Security-Policy, Referrer-Policy), and the headers it strips so
// that the nodes' software and versions do not show (Server,
// X-Powered-By). A header set replaces the node's; a header removed is
// dropped from the node's response. Build them with NewResponseHeaders; nil
// has no rules.
type ResponseHeaders struct {
	set   []responseField // in name order
	names map[string]bool // every name set or removed
}

type responseField struct {
	name  string
	value []string // one value; the slice's capacity is 1, so an append copies it
}

// reservedResponseHeaders frame the message or are flowgate's to set.
var reservedResponseHeaders = map[string]string{
	"Content-Length":            "",
	"Transfer-Encoding":         "",
	"Connection":                "",
	"Keep-Alive":                "",
	"Upgrade":                   "",
	"Te":                        "",
	"Trailer":                   "",
	"Proxy-Connection":          "",
	"Date":                      "",
	"Content-Type":              "",
	"Content-Encoding":          "",
	"Vary":                      " (http.compression adds Accept-Encoding to it)",
	"Location":                  "",
	"Set-Cookie":                " (cookies are the application's)",
	"Strict-Transport-Security": " (use tls.hsts_max_age)",
}

// NewResponseHeaders builds rules from header names and values: a value
// sets the header, an empty value removes it.
func NewResponseHeaders(m map[string]string) (*ResponseHeaders, error) {
	if len(m) == 0 {
		return nil, nil
	}
	r := &ResponseHeaders{names: make(map[string]bool, len(m))}
	for name, value := range m {
		if !validFieldName(name) {
			return nil, fmt.Errorf("%q is not a header name", name)
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if why, ok := reservedResponseHeaders[canon]; ok {
			return nil, fmt.Errorf("%s frames the response or is flowgate's to set; it cannot be changed here%s", canon, why)
		}
		if r.names[canon] {
			return nil, fmt.Errorf("%s is given twice (names are case-insensitive)", canon)
		}
		value = strings.TrimSpace(value)
		if !validFieldValue(value) {
			return nil, fmt.Errorf("%s: the value %q holds a control character", canon, value)
		}
		r.names[canon] = true
		if value != "" {
			r.set = append(r.set, responseField{name: canon, value: []string{value}[:1:1]})
		}
	}
	slices.SortFunc(r.set, func(a, b responseField) int { return strings.Compare(a.name, b.name) })
	return r, nil
}

// ruled reports whether a header of the node's response is replaced or
// removed. r may be nil.
func (r *ResponseHeaders) ruled(name string) bool {
	return r != nil && r.names[name]
}
