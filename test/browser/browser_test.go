package browser

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/security"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/flowgate/flowgate/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// TestBrowser opens the stub's page through flowgate (built-in issuer, CA
// mode, --server-name localhost) in headless Chromium.
func TestBrowser(t *testing.T) {
	_, certutil := requireBrowser(t)
	checkLeaks(t)

	stub := harness.StartStub(t, "node-a")
	// The HTTPS port must be known in advance: a redirect from a listener
	// on port 0 would point at port 443.
	httpsAddr := harness.FreePort(t)
	fg := harness.StartFlowgate(t, harness.Options{
		Args:      []string{"--https-addr", httpsAddr, "--server-name", "localhost"},
		Upstreams: []string{stub.Addr},
		// The page comes gzipped, for Chromium to decode.
		Config: "http:\n  compression:\n    enabled: true\n    min_length: 0\n",
	})
	if fg.CAPEM == nil {
		t.Fatalf("admin %s served no CA certificate; want the built-in issuer's CA", "/.well-known/flowgate/ca.crt")
	}
	_, httpsPort, _ := net.SplitHostPort(fg.HTTPS)
	_, httpPort, _ := net.SplitHostPort(fg.HTTP)
	pageURL := "https://localhost:" + httpsPort + "/"

	t.Run("http_redirects_to_https_page_with_websocket_echo", func(t *testing.T) {
		t.Parallel()
		ctx := startBrowser(t, browserOptions{TrustCA: fg.CAPEM, Certutil: certutil})
		// Both hosts end on the configured server name, the name the
		// certificate is issued for: flowgate never redirects to the Host
		// a client sent unless it is a server name.
		for _, tc := range []struct {
			name, start, shot string
		}{
			{"server_name", "http://localhost:" + httpPort + "/", "browser-redirect-echo.png"},
			{"other_host_to_server_name", "http://127.0.0.1:" + httpPort + "/", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, hops, err := navigate(ctx, tc.start)
				if err != nil {
					t.Fatalf("navigating to %s: %v", tc.start, err)
				}
				want := []redirectHop{{From: tc.start, Status: http.StatusMovedPermanently, Location: pageURL}}
				if !slices.Equal(hops, want) {
					t.Errorf("redirects: got %+v; want %+v", hops, want)
				}
				checkSecurePage(t, resp, pageURL, caSubjectCN(t, fg.CAPEM))
				st, err := waitEcho(ctx)
				checkEcho(t, st, err, stub.Name)
				if u, err := url.Parse(st.URL); err != nil || u.Scheme != "https" {
					t.Errorf("page location: got %q; want an https URL", st.URL)
				}
				if tc.shot != "" {
					t.Logf("screenshot: %s", screenshot(t, ctx, tc.shot))
				}
			})
		}
	})

	t.Run("trusted_ca_no_certificate_error", func(t *testing.T) {
		t.Parallel()
		ctx := startBrowser(t, browserOptions{TrustCA: fg.CAPEM, Certutil: certutil})
		resp, _, err := navigate(ctx, pageURL)
		if err != nil {
			t.Fatalf("navigating to %s with flowgate's CA trusted: got %v; want the page", pageURL, err)
		}
		checkSecurePage(t, resp, pageURL, caSubjectCN(t, fg.CAPEM))
		if got := headerValue(resp.Headers, "Content-Encoding"); got != "gzip" {
			t.Errorf("page Content-Encoding %q; want gzip (http.compression), which the page's script then ran from", got)
		}
		if d := resp.SecurityDetails; d != nil && !slices.Contains(d.SanList, "localhost") {
			t.Errorf("certificate names: got %q; want localhost among them", d.SanList)
		}
		st, err := waitEcho(ctx)
		checkEcho(t, st, err, stub.Name)
	})

	t.Run("untrusted_ca_certificate_error", func(t *testing.T) {
		t.Parallel()
		ctx := startBrowser(t, browserOptions{})
		resp, _, err := navigate(ctx, pageURL)
		var le *chromedp.LoadError
		if !errors.As(err, &le) || le.ErrorText != "net::ERR_CERT_AUTHORITY_INVALID" {
			state := "no response"
			if resp != nil {
				state = "security state " + string(resp.SecurityState)
			}
			t.Fatalf("navigating to %s without trusting flowgate's CA: got error %v (%s); want a load error net::ERR_CERT_AUTHORITY_INVALID", pageURL, err, state)
		}
	})

	t.Run("leaf_rotation_then_reload", func(t *testing.T) {
		t.Parallel()
		testLeafRotation(t, certutil)
	})
}

// checkSecurePage checks that the browser loaded wantURL with status 200
// over a TLS connection it considers secure, with a certificate issued by
// the CA named caCN.
func checkSecurePage(t *testing.T, resp *network.Response, wantURL, caCN string) {
	t.Helper()
	if resp == nil {
		t.Fatal("no response for the page")
	}
	if resp.URL != wantURL {
		t.Errorf("final URL: got %q; want %q", resp.URL, wantURL)
	}
	if resp.Status != http.StatusOK {
		t.Errorf("status of %s: got %d; want 200", resp.URL, resp.Status)
	}
	if resp.SecurityState != security.StateSecure {
		t.Errorf("security state of %s: got %q; want %q", resp.URL, resp.SecurityState, security.StateSecure)
	}
	if resp.SecurityDetails == nil {
		t.Fatalf("no TLS details for %s", resp.URL)
	}
	if got := resp.SecurityDetails.Issuer; got != caCN {
		t.Errorf("certificate issuer: got %q; want flowgate's CA %q", got, caCN)
	}
}

// checkEcho checks that the page's WebSocket round trip through flowgate
// came back with the message the page sent.
func checkEcho(t *testing.T, st pageState, err error, node string) {
	t.Helper()
	if err != nil {
		t.Fatalf("waiting for the WebSocket echo: %v (page: %+v)", err, st)
	}
	if st.State != "echoed" || st.Echo != echoMessage || st.Error != "" {
		t.Errorf("page: got state %q, #echo %q, error %q; want state \"echoed\", #echo %q, no error", st.State, st.Echo, st.Error, echoMessage)
	}
	if st.Node != node {
		t.Errorf("node shown: got %q; want %q", st.Node, node)
	}
}

// checkLeaks fails the test if goroutines it started are still running
// after every cleanup, the browsers' and processes' included.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		// The harness's admin requests use the default transport; its idle
		// connections are not leaks.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if err := goleak.Find(ignore); err != nil {
			t.Errorf("leaked goroutines: %v", err)
		}
	})
}

// waitCtx returns a context for a bounded wait in a test.
func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
