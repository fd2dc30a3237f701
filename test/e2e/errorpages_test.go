package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/test/harness"
)

// TestErrorPagesWithCurl: with http.error_pages, curl asking for HTML
// gets the maintenance page with flowgate's 503 while no node is up, over
// HTTP/1.1 and HTTP/2; asking for JSON it gets the text. A reload picks up
// a new page, and one whose file is gone is rejected while the old page
// keeps serving.
func TestErrorPagesWithCurl(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	page := filepath.Join(dir, "maintenance.html")
	if err := os.WriteFile(page, []byte("<h1>Flowable is being updated</h1>\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on the node's port: every request gets 503.
	config := "upstreams:\n  static: [\"" + harness.FreePort(t) + "\"]\nhttp:\n  error_pages:\n    503: " + page + "\n"
	fg := harness.StartFlowgate(t, harness.Options{Config: config})
	ca := caFile(t, fg)
	check := func(want string) {
		t.Helper()
		for _, proto := range []string{"--http1.1", "--http2"} {
			out := curl(t, "--cacert", ca, proto, "-H", "Accept: text/html,*/*;q=0.8", "-w", "%{http_code} %{content_type}", fg.URL("/flowable-ui/"))
			if out != want+"503 text/html; charset=utf-8" {
				t.Errorf("%s, a browser's Accept: got %q; want the page %q with 503", proto, out, want)
			}
			api := curl(t, "--cacert", ca, proto, "-H", "Accept: application/json", "-w", "%{http_code}", fg.URL("/flowable-rest/service/runtime/tasks"))
			if !strings.HasPrefix(api, "no upstream available") || !strings.HasSuffix(api, "503") {
				t.Errorf("%s, an API call: got %q; want the text with 503", proto, api)
			}
		}
	}
	check("<h1>Flowable is being updated</h1>\n")

	if err := os.WriteFile(page, []byte("<h1>Back at 18:00</h1>\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fg.Reload(); err != nil {
		t.Fatal(err)
	}
	check("<h1>Back at 18:00</h1>\n")

	if err := os.Remove(page); err != nil {
		t.Fatal(err)
	}
	if err := fg.Reload(); err == nil || !strings.Contains(err.Error(), "http.error_pages") {
		t.Fatalf("reload with the page gone: %v; want it rejected, naming http.error_pages", err)
	}
	check("<h1>Back at 18:00</h1>\n")
}
