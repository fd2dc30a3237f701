package browser

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/flowgate/flowgate/test/harness"
)

// chromiumPath is Debian's Chromium, the browser operators' users run.
const chromiumPath = "/usr/bin/chromium"

// Bounds of the browser steps. A step that needs longer is a failure: every
// server is on loopback.
const (
	// navTimeout bounds one navigation or reload, redirects included.
	navTimeout = 20 * time.Second
	// echoTimeout bounds the wait for the page's WebSocket round trip.
	echoTimeout = 15 * time.Second
)

// echoMessage is what the stub's page sends over its WebSocket; the echo
// written into #echo must equal it.
const echoMessage = "hello through flowgate"

// requireBrowser returns the paths of Chromium and certutil. When one is
// missing the test fails under CI=true and is skipped, loudly, otherwise.
func requireBrowser(t *testing.T) (chromium, certutil string) {
	t.Helper()
	if fi, err := os.Stat(chromiumPath); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true (Debian package chromium; test/run.sh installs it): %v", chromiumPath, err)
		}
		t.Skipf("SKIPPED: %s not found (%v); install the Debian package chromium to run the browser tests", chromiumPath, err)
	}
	return chromiumPath, harness.RequireTool(t, "certutil")
}

// browserOptions configure startBrowser.
type browserOptions struct {
	// TrustCA, when set, is a PEM CA certificate the browser trusts as a
	// root for TLS servers: it is imported into the NSS database of the
	// browser's own HOME, as a user would import it. Nil trusts nothing but
	// the system roots.
	TrustCA []byte
	// Certutil is the path of certutil; required with TrustCA.
	Certutil string
}

// startBrowser starts a headless Chromium with a fresh profile and a fresh
// HOME, and returns a chromedp context of its first tab. The browser is
// stopped, and its output logged on failure, when the test ends.
func startBrowser(t *testing.T, opts browserOptions) context.Context {
	t.Helper()
	home := t.TempDir()
	if opts.TrustCA != nil {
		trustCA(t, opts.Certutil, home, opts.TrustCA)
	}
	// Registered before the browser's own cleanup, so removed after the
	// browser has exited.
	profile := t.TempDir()

	out := new(lockedBuffer)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(profile),
		// Chromium reads its certificate trust from $HOME/.pki/nssdb.
		chromedp.Env("HOME="+home),
		chromedp.CombinedOutput(out),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
	// The first action starts the browser; it must run on a context without
	// a deadline, which would end the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v\n%s", chromiumPath, err, out.String())
	}
	return ctx
}

// trustCA creates the NSS database Chromium reads under home and imports
// caPEM into it as a trusted issuer of server certificates ("C,,"), which
// is how a user trusts a CA for Chromium on Linux. The switch
// --ignore-certificate-errors-spki-list is no substitute: given the CA's
// SPKI hash, Chromium 156 still fails with ERR_CERT_AUTHORITY_INVALID, and
// it ignores errors rather than trusting a root.
func trustCA(t *testing.T, certutil, home string, caPEM []byte) {
	t.Helper()
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(home, "flowgate-ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, certutil, append([]string{"-d", "sql:" + db}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("certutil %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("-N", "--empty-password")
	run("-A", "-t", "C,,", "-n", "flowgate", "-i", caFile)
	if got := run("-L", "-n", "flowgate"); !strings.Contains(got, caSubjectCN(t, caPEM)) {
		t.Fatalf("certutil -L -n flowgate: got\n%s\nwant the CA %q", got, caSubjectCN(t, caPEM))
	}
}

// caSubjectCN returns the common name of a PEM certificate.
func caSubjectCN(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate:\n%s", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parsing the CA certificate: %v", err)
	}
	return cert.Subject.CommonName
}

// redirectHop is one HTTP redirect the browser followed.
type redirectHop struct {
	From     string
	Status   int64
	Location string
}

// navigate loads url in the tab, following redirects, and returns the
// response of the final document and the redirects on the way. A failed
// load returns a *chromedp.LoadError holding Chromium's net::ERR_… text.
func navigate(ctx context.Context, url string) (*network.Response, []redirectHop, error) {
	return loadWith(ctx, func(ctx context.Context) (*network.Response, error) {
		return chromedp.Run(ctx, chromedp.NavigateResponse(url))
	})
}

// reload reloads the tab, as the reload button does, and returns the
// response of the document like navigate.
func reload(ctx context.Context) (*network.Response, []redirectHop, error) {
	return loadWith(ctx, func(ctx context.Context) (*network.Response, error) {
		return chromedp.RunResponse(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, page.Reload, page.ReloadParams{})
			return err
		}))
	})
}

// loadWith runs do with navTimeout, recording the redirects of document
// requests meanwhile.
func loadWith(ctx context.Context, do func(context.Context) (*network.Response, error)) (*network.Response, []redirectHop, error) {
	var (
		mu   sync.Mutex
		hops []redirectHop
	)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := chromedp.Listen(lctx, func(ev any) {
		e, ok := ev.(*network.EventRequestWillBeSent)
		if !ok || e.RedirectResponse == nil || e.Type != network.ResourceTypeDocument {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		hops = append(hops, redirectHop{
			From:     e.RedirectResponse.URL,
			Status:   e.RedirectResponse.Status,
			Location: headerValue(e.RedirectResponse.Headers, "Location"),
		})
	})
	if err != nil {
		return nil, nil, err
	}
	tctx, cancelT := context.WithTimeout(ctx, navTimeout)
	defer cancelT()
	resp, err := do(tctx)
	mu.Lock()
	defer mu.Unlock()
	return resp, hops, err
}

// headerValue returns a header of a CDP response, matched case-insensitively
// (HTTP/2 names arrive in lower case).
func headerValue(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// pageState is what the stub's page shows about its WebSocket round trip.
type pageState struct {
	URL   string `json:"url"`
	Node  string `json:"node"`
	State string `json:"state"`
	Echo  string `json:"echo"`
	Error string `json:"error"`
}

// waitEcho waits until the page's WebSocket round trip has ended, in an echo
// or an error, and returns what the page shows.
func waitEcho(ctx context.Context) (pageState, error) {
	tctx, cancel := context.WithTimeout(ctx, echoTimeout+5*time.Second)
	defer cancel()
	_, pollErr := chromedp.Run(tctx, chromedp.Poll[bool](
		`(function () { var s = document.getElementById("state"); return !!s && s.textContent !== "connecting" && s.textContent !== "open"; })()`,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(echoTimeout),
	))
	st, err := chromedp.Run(tctx, chromedp.Evaluate[pageState](`(function () {
  function text(id) { var e = document.getElementById(id); return e ? e.textContent : ""; }
  return {url: location.href, node: text("node"), state: text("state"), echo: text("echo"), error: text("error")};
})()`))
	if err != nil {
		return pageState{}, errors.Join(pollErr, err)
	}
	if pollErr != nil {
		return st, pollErr
	}
	return st, nil
}

// screenshot captures the tab's viewport as PNG into test/artifacts/name,
// so a person can look at what the browser rendered.
func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, navTimeout)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot: got %d bytes starting %q; want a PNG", len(png), png[:min(len(png), 8)])
	}
	dir := filepath.Join(harness.ModuleRoot(t), "test", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lockedBuffer is a bytes.Buffer safe for the browser's output goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
