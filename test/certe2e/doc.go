// Package certe2e holds end-to-end tests of flowgate's certificate sources
// through the built binary over real TLS on loopback: hot reload of
// certificate files under continuous new handshakes, a mismatched key kept
// out of service, the built-in issuer's rotation and its reuse of state
// across a restart, `flowgate cert issue` and `flowgate cert show`, and a
// SIGHUP that swaps the certificate files.
//
// The tests print measured figures as "FIGURE:" log lines:
//
//	go test -v ./test/certe2e | grep FIGURE
package certe2e
