package fault

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowgate/flowgate/test/harness"
)

// TestMain fails the package when a test leaves a goroutine behind (a
// client connection, a fault upstream, a process reader).
func TestMain(m *testing.M) { goleak.VerifyTestMain(harness.M(m)) }

// pidOf finds the process whose command line holds the argument marker (a
// path unique to one test, such as its --state-dir), so that its /proc
// entries can be read.
func pidOf(t testing.TB, marker string) int {
	t.Helper()
	if marker == "" {
		t.Fatal("pidOf: empty marker")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(cmdline), "\x00"), marker) {
			return pid
		}
	}
	t.Fatalf("no process has %q on its command line", marker)
	return 0
}

// rssKB reads VmRSS of a process from /proc/PID/status, in KiB.
func rssKB(t testing.TB, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the status of process %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS of process %d: %q: %v", pid, v, err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// fdCount counts the open file descriptors of a process.
func fdCount(t testing.TB, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("listing the descriptors of process %d: %v", pid, err)
	}
	return len(entries)
}

// connsTo counts the established IPv4 TCP connections to addr
// ("127.0.0.1:PORT"), from any process, read from /proc/net/tcp.
func connsTo(t testing.TB, addr string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		t.Fatalf("connsTo: %q is not an IPv4 address and port", addr)
	}
	ip := ap.Addr().As4()
	// /proc/net/tcp shows the address as the little-endian hex of the
	// 32-bit word, then the port in hex.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatalf("reading /proc/net/tcp: %v", err)
	}
	n := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		const established = "01"
		if len(f) > 3 && f[2] == want && f[3] == established {
			n++
		}
	}
	return n
}

// raiseNoFile raises this process's soft RLIMIT_NOFILE to at least n (up
// to the hard limit); processes started afterwards inherit it. It fails
// the test when the hard limit is below n.
func raiseNoFile(t testing.TB, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit NOFILE: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("RLIMIT_NOFILE hard limit %d is below the %d this test needs; raise it (ulimit -Hn)", lim.Max, n)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit NOFILE to %d: %v", lim.Cur, err)
	}
}

// dialTLS opens a TLS connection to flowgate's HTTPS listener offering
// HTTP/1.1 only, so that hand-written requests can be sent.
func dialTLS(t testing.TB, fg *harness.Flowgate) *tls.Conn {
	t.Helper()
	c, err := tryDialTLS(fg, 10*time.Second)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", fg.HTTPS, err)
	}
	return c
}

// tryDialTLS opens a TLS connection offering HTTP/1.1 only and completes
// the handshake within timeout.
func tryDialTLS(fg *harness.Flowgate, timeout time.Duration) (*tls.Conn, error) {
	tc := fg.TLS.Clone()
	tc.NextProtos = []string{"http/1.1"}
	if tc.ServerName == "" {
		// The address is an IP literal, which the default certificate
		// covers; an IP in ServerName sends no SNI, as a client dialling
		// an IP would.
		tc.ServerName, _, _ = net.SplitHostPort(fg.HTTPS)
	}
	d := &net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", fg.HTTPS)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, tc)
	c.SetDeadline(time.Now().Add(timeout))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// servedSerial completes a TLS handshake with addr, verifying the chain
// against roots for 127.0.0.1, and returns the leaf's serial in hex.
func servedSerial(addr string, roots *x509.CertPool) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return fmt.Sprintf("%x", c.ConnectionState().PeerCertificates[0].SerialNumber), nil
}

// exchange writes raw bytes on a new TLS connection and reads every
// response until flowgate closes the connection or the wait passes.
func exchange(t testing.TB, fg *harness.Flowgate, raw string, wait time.Duration) []*http.Response {
	t.Helper()
	resps, err := tryExchange(fg, raw, wait)
	if err != nil {
		t.Fatal(err)
	}
	return resps
}

// tryExchange is exchange for goroutines other than the test's: it returns
// the error instead of failing the test. The bodies are read and closed;
// each response's body text is in its X-Test-Body header.
func tryExchange(fg *harness.Flowgate, raw string, wait time.Duration) ([]*http.Response, error) {
	c, err := tryDialTLS(fg, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("TLS dial %s: %w", fg.HTTPS, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(raw)); err != nil {
		return nil, fmt.Errorf("writing the request: %w", err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out, nil
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		resp.Header.Set("X-Test-Body", body.String())
		out = append(out, resp)
	}
}

// percentile returns the p-th percentile (0-100) of ds, which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}
