package proxy

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrorPages are HTML pages that flowgate sends instead of its one-line
// text with its own 502, 503 and 504 answers (no node answered, none is
// available, one timed out) to clients that take HTML, as NGINX's
// error_page is used for a maintenance page. API clients, which do not
// ask for HTML, keep the text. Build them with LoadErrorPages; nil has
// none.
type ErrorPages struct {
	pages map[int][]byte
}

// ErrorPageCodes are the answers that can have a page.
var ErrorPageCodes = []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// maxErrorPageBytes bounds a page: it is held in memory and copied into
// each answer.
const maxErrorPageBytes = 64 << 10

// LoadErrorPages reads the HTML file of each status code.
func LoadErrorPages(files map[int]string) (*ErrorPages, error) {
	if len(files) == 0 {
		return nil, nil
	}
	e := &ErrorPages{pages: make(map[int][]byte, len(files))}
	codes := make([]int, 0, len(files))
	for code := range files {
		codes = append(codes, code)
	}
	slices.Sort(codes) // the first bad one reported is always the same
	for _, code := range codes {
		path := files[code]
		if !slices.Contains(ErrorPageCodes, code) {
			return nil, fmt.Errorf("%d: flowgate answers 502, 503 and 504 itself; only they can have a page", code)
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".html", ".htm":
		default:
			return nil, fmt.Errorf("%d: %q is not an .html file; error pages are HTML for browsers (API clients keep the text answer)", code, path)
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%d: %w", code, err)
		}
		if st.Size() > maxErrorPageBytes {
			return nil, fmt.Errorf("%d: %s is %d bytes; at most %d (inline what it needs, or link it from a node)", code, path, st.Size(), maxErrorPageBytes)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%d: %w", code, err)
		}
		if len(b) == 0 || len(b) > maxErrorPageBytes {
			return nil, fmt.Errorf("%d: %s is empty or grew while read; write it whole, then reload", code, path)
		}
		e.pages[code] = b
	}
	return e, nil
}

// page returns the page for code when the request takes HTML; nil
// otherwise. e may be nil.
func (e *ErrorPages) page(code int, r *http.Request) []byte {
	if e == nil {
		return nil
	}
	b := e.pages[code]
	if b == nil || !acceptsHTML(r.Header["Accept"]) {
		return nil
	}
	return b
}

// acceptsHTML reports whether an Accept field names text/html with a
// weight above 0, as a browser's page load does. "*/*" alone is not
// enough: scripts' API calls send it, and want no page.
func acceptsHTML(values []string) bool {
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			mt, params, _ := strings.Cut(elem, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				return positiveWeight(params)
			}
		}
	}
	return false
}

// writeErrorPage answers code with its page when there is one and the
// client takes HTML, else with text, as writeError.
func writeErrorPage(w http.ResponseWriter, r *http.Request, pages *ErrorPages, code int, text string) {
	page := pages.page(code, r)
	if page == nil {
		writeError(w, code, text)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(page)
}
