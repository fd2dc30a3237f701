package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/textproto"
)

// Request IDs (Options.RequestIDHeader) let an operator follow one request
// from flowgate's access log to the node's log and back to the client,
// which gets it in the response. A request that comes through a trusted
// proxy (Options.TrustedProxies) keeps the ID that proxy gave it; any
// other gets a new one, so that a client cannot pick the ID another
// request is logged under.

// maxRequestIDLen bounds an ID taken from a trusted proxy.
const maxRequestIDLen = 200

// newRequestID is 128 random bits in hex, as NGINX's $request_id. They need
// not be unpredictable, only unique: the runtime's generator serves.
func newRequestID() string {
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], rand.Uint64())
	var out [32]byte
	hex.Encode(out[:], raw[:])
	return string(out[:])
}

// validRequestID reports whether id, from a trusted proxy, can be passed on
// and logged: 1 to maxRequestIDLen characters of the sets that UUIDs,
// hex, base64 and the usual trace formats use.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}

// requestIDFor is the ID of a request that came with values in the ID
// header, from a peer that is trusted or not.
func requestIDFor(values []string, trusted bool) string {
	if trusted && len(values) == 1 && validRequestID(values[0]) {
		return values[0]
	}
	return newRequestID()
}

// reservedRequestIDHeaders are fields flowgate sets or that frame the
// message: none can carry the request ID.
var reservedRequestIDHeaders = map[string]bool{
	"Host": true, "Connection": true, "Upgrade": true, "Content-Length": true,
	"Transfer-Encoding": true, "Te": true, "Trailer": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Proxy-Authorization": true, "Proxy-Authenticate": true,
	"Cookie": true, "Set-Cookie": true, "Authorization": true, "Content-Type": true,
	"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true,
	"X-Forwarded-Port": true, "X-Real-Ip": true, "Forwarded": true,
	"Strict-Transport-Security": true, "Date": true, "Location": true,
}

// CheckRequestIDHeader validates a header name for Options.RequestIDHeader
// and returns its canonical form.
func CheckRequestIDHeader(name string) (string, error) {
	if !validFieldName(name) {
		return "", fmt.Errorf("%q is not a header name", name)
	}
	canon := textproto.CanonicalMIMEHeaderKey(name)
	if reservedRequestIDHeaders[canon] {
		return "", fmt.Errorf("%s is a header flowgate sets or that frames the message; use X-Request-ID", canon)
	}
	return canon, nil
}
