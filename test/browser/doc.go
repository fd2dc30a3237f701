// Package browser holds flowgate's real-browser end-to-end tests: Debian's
// Chromium, driven headless with chromedp, opens the stand-in Flowable node
// (test/flowablestub) through the built flowgate binary with its built-in
// CA issuer. The tests check what an operator's users see: the plain-HTTP
// redirect ends on the HTTPS page, the page's WebSocket echo works through
// the proxy, a browser that trusts flowgate's CA once sees no certificate
// error (also after the leaf rotates), and one that does not trust it does.
//
// The package has only tests. They need /usr/bin/chromium and certutil
// (Debian packages chromium and libnss3-tools, installed by test/run.sh);
// without them the tests fail under CI=true and skip loudly otherwise. The
// screenshot of the redirect case is written to test/artifacts/.
package browser
