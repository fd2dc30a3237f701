package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNewIssuerValidation(t *testing.T) {
	tests := []struct {
		name   string
		modify func(o *IssuerOptions)
		want   string
	}{
		{"no state dir", func(o *IssuerOptions) { o.StateDir = "" }, "no state directory"},
		{"unknown mode", func(o *IssuerOptions) { o.Mode = "acme" }, "unknown issuer mode"},
		{"unknown key", func(o *IssuerOptions) { o.KeyType = "rsa1024" }, "unknown key type"},
		{"CA files in self-signed mode", func(o *IssuerOptions) { o.Mode = IssuerModeSelfSigned; o.CACertFile, o.CAKeyFile = "c", "k" }, "only used in mode"},
		{"CA cert without key", func(o *IssuerOptions) { o.CACertFile = "c" }, "configured together"},
		{"leaf too long", func(o *IssuerOptions) { o.LeafLifetime = 900 * 24 * time.Hour }, "out of range"},
		{"leaf too short", func(o *IssuerOptions) { o.LeafLifetime = MinLeafLifetime - time.Second }, "out of range"},
		{"CA shorter than leaf", func(o *IssuerOptions) { o.CALifetime = 10 * 24 * time.Hour }, "must be longer"},
		{"renew before too late", func(o *IssuerOptions) { o.RenewBefore = 29 * 24 * time.Hour }, "at most 90%"},
		{"negative renew before", func(o *IssuerOptions) { o.RenewBefore = -time.Hour }, "positive"},
		{"check interval too long", func(o *IssuerOptions) { o.CheckInterval = 5 * time.Minute }, "at most 1m"},
		{"bad host", func(o *IssuerOptions) { o.Hosts = []string{"flowable:8090"} }, "flowable:8090"},
		{"user CA missing", func(o *IssuerOptions) { o.CACertFile, o.CAKeyFile = "/nonexistent/ca.crt", "/nonexistent/ca.key" }, "/nonexistent/ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testIssuerOptions(t)
			tt.modify(&opts)
			_, err := NewIssuer(opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewIssuer: got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestIssuerDefaults(t *testing.T) {
	opts := IssuerOptions{StateDir: "x"}.withDefaults()
	if opts.Mode != IssuerModeCA || opts.KeyType != KeyP256 || opts.LeafLifetime != 30*24*time.Hour ||
		opts.RenewBefore != 10*24*time.Hour || opts.CALifetime != 10*365*24*time.Hour || opts.CheckInterval != time.Minute {
		t.Errorf("withDefaults: got mode %q key %q leaf %s renew %s CA %s check %s; want ca p256 720h 240h 87600h 1m",
			opts.Mode, opts.KeyType, opts.LeafLifetime, opts.RenewBefore, opts.CALifetime, opts.CheckInterval)
	}
	if got := (IssuerOptions{Mode: " CA ", KeyType: "P384"}).withDefaults(); got.Mode != IssuerModeCA || got.KeyType != KeyP384 {
		t.Errorf("withDefaults normalisation: got mode %q key %q; want ca p384", got.Mode, got.KeyType)
	}
	hosts := strings.Join(opts.Hosts, ",")
	if !strings.HasSuffix(hosts, "localhost,127.0.0.1,::1") {
		t.Errorf("default hosts: got %q; want the host name then localhost,127.0.0.1,::1", hosts)
	}
}

func TestIssuerStateFiles(t *testing.T) {
	opts := testIssuerOptions(t)
	iss := newTestIssuer(t, opts)
	modes := map[string]os.FileMode{
		opts.StateDir: 0o700,
		filepath.Join(opts.StateDir, CACertFileName):   0o644,
		filepath.Join(opts.StateDir, CAKeyFileName):    0o600,
		filepath.Join(opts.StateDir, LeafCertFileName): 0o644,
		filepath.Join(opts.StateDir, LeafKeyFileName):  0o600,
	}
	for path, want := range modes {
		if got := fileMode(t, path); got != want {
			t.Errorf("mode of %s: got %o; want %o", path, got, want)
		}
	}
	onDisk := readLeafFile(t, filepath.Join(opts.StateDir, LeafCertFileName))
	if served := servedLeaf(t, iss); !bytes.Equal(onDisk.Raw, served.Raw) {
		t.Errorf("leaf on disk: got serial %s; want the served %s", SerialHex(onDisk), SerialHex(served))
	}
	caPEM, err := os.ReadFile(filepath.Join(opts.StateDir, CACertFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(iss.CACertificatePEM(), caPEM) {
		t.Errorf("CACertificatePEM: got %q; want the content of ca.crt", iss.CACertificatePEM())
	}
	if bytes.Contains(iss.CACertificatePEM(), []byte("PRIVATE")) {
		t.Error("CACertificatePEM contains a private key")
	}
	verifyServerLeaf(t, servedLeaf(t, iss), caPool(t, caPEM), issuerTestHosts, time.Now())
}

// TestIssuerRestart checks what a new Issuer on an existing state directory
// reuses and what it replaces.
func TestIssuerRestart(t *testing.T) {
	base := testIssuerOptions(t)
	start := time.Now()
	base.Now = func() time.Time { return start }
	first := newTestIssuer(t, base)
	firstLeaf := servedLeaf(t, first)
	caPEM := first.CACertificatePEM()

	tests := []struct {
		name      string
		modify    func(o *IssuerOptions)
		wantReuse bool
	}{
		{name: "same options", modify: func(o *IssuerOptions) {}, wantReuse: true},
		{name: "same hosts in another order and case", modify: func(o *IssuerOptions) {
			o.Hosts = []string{"::1", "LOCALHOST", "127.0.0.1", "flowgate.test"}
		}, wantReuse: true},
		{name: "one day later", modify: func(o *IssuerOptions) {
			o.Now = func() time.Time { return start.Add(24 * time.Hour) }
		}, wantReuse: true},
		{name: "hosts changed", modify: func(o *IssuerOptions) { o.Hosts = append(o.Hosts, "flowable.test") }},
		{name: "host removed", modify: func(o *IssuerOptions) { o.Hosts = o.Hosts[1:] }},
		{name: "key type changed", modify: func(o *IssuerOptions) { o.KeyType = KeyP384 }},
		{name: "lifetime shortened", modify: func(o *IssuerOptions) { o.LeafLifetime = 7 * 24 * time.Hour }},
		{name: "past the renewal point", modify: func(o *IssuerOptions) {
			o.Now = func() time.Time { return start.Add(20 * 24 * time.Hour) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case starts from a copy of the first issuer's state.
			opts := base
			opts.StateDir = filepath.Join(t.TempDir(), "state")
			copyDir(t, base.StateDir, opts.StateDir)
			tt.modify(&opts)
			iss := newTestIssuer(t, opts)
			leaf := servedLeaf(t, iss)
			if reused := bytes.Equal(leaf.Raw, firstLeaf.Raw); reused != tt.wantReuse {
				t.Errorf("leaf reused: got %t; want %t", reused, tt.wantReuse)
			}
			if !bytes.Equal(iss.CACertificatePEM(), caPEM) {
				t.Error("CA after restart: got a new CA; want the saved one")
			}
			verifyServerLeaf(t, leaf, caPool(t, caPEM), opts.Hosts, opts.Now())
			onDisk := readLeafFile(t, filepath.Join(opts.StateDir, LeafCertFileName))
			if !bytes.Equal(onDisk.Raw, leaf.Raw) {
				t.Errorf("leaf on disk: got serial %s; want the served %s", SerialHex(onDisk), SerialHex(leaf))
			}
		})
	}
}

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		info, _ := e.Info()
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIssuerCorruptLeafMovedAside(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		write func(old []byte) []byte
	}{
		{name: "garbage certificate", file: LeafCertFileName, write: func([]byte) []byte { return []byte("garbage") }},
		{name: "truncated certificate", file: LeafCertFileName, write: func(old []byte) []byte { return old[:len(old)/2] }},
		{name: "truncated key", file: LeafKeyFileName, write: func(old []byte) []byte { return old[:len(old)/2] }},
		{name: "empty key", file: LeafKeyFileName, write: func([]byte) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testIssuerOptions(t)
			first := newTestIssuer(t, opts)
			path := filepath.Join(opts.StateDir, tt.file)
			old, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			corrupt := tt.write(old)
			if err := os.WriteFile(path, corrupt, 0o600); err != nil {
				t.Fatal(err)
			}
			var log issuerLog
			opts.Logger = newTestLogger(&log)
			second := newTestIssuer(t, opts)
			if bytes.Equal(servedLeaf(t, second).Raw, servedLeaf(t, first).Raw) {
				t.Error("leaf after corruption: got the old leaf; want a new one")
			}
			if !bytes.Equal(second.CACertificatePEM(), first.CACertificatePEM()) {
				t.Error("CA after a corrupt leaf: got a new CA; want the saved one")
			}
			moved := globAll(t, path+".corrupt-*")
			if len(moved) != 1 {
				t.Fatalf("moved-aside files for %s: got %v; want one", tt.file, moved)
			}
			if got, _ := os.ReadFile(moved[0]); !bytes.Equal(got, corrupt) {
				t.Errorf("moved-aside content: got %q; want the corrupt file %q", got, corrupt)
			}
			if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), "corrupt") {
				t.Errorf("log: got %q; want an error about the corrupt certificate", log.String())
			}
			verifyServerLeaf(t, servedLeaf(t, second), caPool(t, second.CACertificatePEM()), issuerTestHosts, time.Now())
		})
	}
}

func TestIssuerSelfSigned(t *testing.T) {
	opts := testIssuerOptions(t)
	opts.Mode = IssuerModeSelfSigned
	opts.KeyType = KeyRSA2048
	opts.LeafLifetime = 365 * 24 * time.Hour
	iss := newTestIssuer(t, opts)
	if pem := iss.CACertificatePEM(); pem != nil {
		t.Errorf("CACertificatePEM in self-signed mode: got %q; want nil", pem)
	}
	leaf := servedLeaf(t, iss)
	if got := KeyType(leaf); got != "RSA 2048" {
		t.Errorf("key type: got %q; want RSA 2048", got)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != 365*24*time.Hour+time.Hour {
		t.Errorf("validity: got %s; want 365 days plus the one-hour backdate", got)
	}
	leafPEM, err := os.ReadFile(filepath.Join(opts.StateDir, LeafCertFileName))
	if err != nil {
		t.Fatal(err)
	}
	verifyServerLeaf(t, leaf, caPool(t, leafPEM), issuerTestHosts, time.Now())
	for _, name := range []string{CACertFileName, CAKeyFileName} {
		if _, err := os.Stat(filepath.Join(opts.StateDir, name)); err == nil {
			t.Errorf("%s exists in self-signed mode; want no CA", name)
		}
	}
	again := newTestIssuer(t, opts)
	if !bytes.Equal(servedLeaf(t, again).Raw, leaf.Raw) {
		t.Error("self-signed leaf after restart: got a new one; want the saved one reused")
	}
	opts.Mode = IssuerModeCA
	caMode := newTestIssuer(t, opts)
	if bytes.Equal(servedLeaf(t, caMode).Raw, leaf.Raw) {
		t.Error("switching to CA mode: got the self-signed leaf; want one signed by the CA")
	}
}

func TestIssuerUserProvidedCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	user := newTestUserCA(t, dir, "shared", now.Add(-time.Hour), now.Add(5*365*24*time.Hour))
	// Two instances with their own state directories share one trust root.
	var leaves []*x509.Certificate
	for i := range 2 {
		opts := testIssuerOptions(t)
		opts.CACertFile, opts.CAKeyFile = user.certPath, user.keyPath
		iss := newTestIssuer(t, opts)
		if !bytes.Equal(iss.CACertificatePEM(), user.certPEM) {
			t.Errorf("instance %d CACertificatePEM: got %q; want the user's CA", i, iss.CACertificatePEM())
		}
		if _, err := os.Stat(filepath.Join(opts.StateDir, CAKeyFileName)); err == nil {
			t.Errorf("instance %d wrote a CA key into its state directory; want the user's CA only", i)
		}
		leaves = append(leaves, servedLeaf(t, iss))
	}
	for _, leaf := range leaves {
		verifyServerLeaf(t, leaf, caPool(t, user.certPEM), issuerTestHosts, now)
	}
	if leaves[0].SerialNumber.Cmp(leaves[1].SerialNumber) == 0 {
		t.Error("two instances issued the same serial")
	}
}

// TestIssuerRSA3072 generates the package's only RSA-3072 key: the leaf of an
// issuer under a P-256 user CA.
func TestIssuerRSA3072(t *testing.T) {
	now := time.Now()
	user := newTestUserCA(t, t.TempDir(), "corp", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	opts := testIssuerOptions(t)
	opts.CACertFile, opts.CAKeyFile = user.certPath, user.keyPath
	opts.KeyType = KeyRSA3072
	iss := newTestIssuer(t, opts)
	leaf := servedLeaf(t, iss)
	if got := KeyType(leaf); got != "RSA 3072" {
		t.Errorf("key type: got %q; want RSA 3072", got)
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; leaf.KeyUsage != want {
		t.Errorf("KeyUsage: got %v; want %v", leaf.KeyUsage, want)
	}
	verifyServerLeaf(t, leaf, caPool(t, user.certPEM), issuerTestHosts, now)
}

func TestIssuerStatusAndMetrics(t *testing.T) {
	opts := testIssuerOptions(t)
	reg := prometheus.NewPedanticRegistry()
	opts.Registerer = reg
	iss := newTestIssuer(t, opts)
	leaf := servedLeaf(t, iss)

	status := iss.Status()
	if len(status) != 1 {
		t.Fatalf("Status: got %d entries; want 1", len(status))
	}
	st := status[0]
	if st.Name != "issuer" || st.Source != "issuer:ca" || st.Serial != SerialHex(leaf) || st.LastError != "" {
		t.Errorf("Status: got name %q source %q serial %q error %q; want issuer, issuer:ca, %s, no error",
			st.Name, st.Source, st.Serial, st.LastError, SerialHex(leaf))
	}
	lo, hi := leaf.NotAfter.Add(-11*24*time.Hour), leaf.NotAfter.Add(-10*24*time.Hour)
	if st.NextRotation.Before(lo) || st.NextRotation.After(hi) {
		t.Errorf("NextRotation: got %s; want within [%s, %s]", st.NextRotation, lo, hi)
	}
	if st.LastReload.IsZero() {
		t.Error("LastReload: got zero; want the time of issue")
	}

	gauges := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{MetricNotAfter, map[string]string{"name": "issuer", "serial": SerialHex(leaf)}, float64(leaf.NotAfter.Unix())},
		{MetricIssuerCANotAfter, nil, float64(iss.ca.cert.NotAfter.Unix())},
		{MetricIssuerNextRotation, nil, float64(st.NextRotation.Unix())},
		{MetricIssuerRotations, map[string]string{"result": "success"}, 1},
		{MetricIssuerRotations, map[string]string{"result": "failure"}, 0},
		{MetricReloads, map[string]string{"name": "issuer", "result": "success"}, 1},
	}
	for _, g := range gauges {
		got, ok := metricValue(t, reg, g.name, g.labels)
		if !ok || got != g.want {
			t.Errorf("%s%v: got %v (present %t); want %v", g.name, g.labels, got, ok, g.want)
		}
	}

	// A second issuer on the same registry (a configuration reload) reuses
	// the collectors instead of failing.
	opts.Hosts = []string{"other.test"}
	if _, err := NewIssuer(opts); err != nil {
		t.Fatalf("second issuer on the same registry: %v", err)
	}

	selfSigned := testIssuerOptions(t)
	selfSigned.Mode = IssuerModeSelfSigned
	reg2 := prometheus.NewPedanticRegistry()
	selfSigned.Registerer = reg2
	newTestIssuer(t, selfSigned)
	if _, ok := metricValue(t, reg2, MetricIssuerCANotAfter, nil); ok {
		t.Errorf("%s in self-signed mode: present; want absent", MetricIssuerCANotAfter)
	}
}

// TestIssuerTLSHandshake serves the issuer's certificate on a real loopback
// listener and connects with a client that trusts only the CA.
func TestIssuerTLSHandshake(t *testing.T) {
	iss := newTestIssuer(t, testIssuerOptions(t))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: iss.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	roots := caPool(t, iss.CACertificatePEM())
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, serverName := range []string{"flowgate.test", "localhost", "127.0.0.1"} {
		d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: serverName}}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		cancel()
		if err != nil {
			t.Errorf("handshake for %q: got %v; want success", serverName, err)
			continue
		}
		conn.Close()
	}
	ln.Close()
	<-done
}

// TestIssuerStartKeepsDueLeafWhenIssuingFails restarts past the renewal
// point with a CA that cannot sign a new leaf: the saved leaf, still valid,
// keeps serving; once it has expired, NewIssuer fails.
func TestIssuerStartKeepsDueLeafWhenIssuingFails(t *testing.T) {
	start := time.Now()
	user := newTestUserCA(t, t.TempDir(), "corp", start.Add(-time.Hour), start.Add(40*24*time.Hour))
	opts := testIssuerOptions(t)
	opts.CACertFile, opts.CAKeyFile = user.certPath, user.keyPath
	opts.Now = func() time.Time { return start }
	saved := servedLeaf(t, newTestIssuer(t, opts))

	later := start.Add(21 * 24 * time.Hour)
	opts.Now = func() time.Time { return later }
	iss := newTestIssuer(t, opts)
	if got := servedLeaf(t, iss); !bytes.Equal(got.Raw, saved.Raw) {
		t.Errorf("served after a failed start rotation: got serial %s; want the saved %s", SerialHex(got), SerialHex(saved))
	}
	st := iss.Status()[0]
	if !strings.Contains(st.LastError, "replace the CA") {
		t.Errorf("LastError: got %q; want advice to replace the CA", st.LastError)
	}
	if want := later.Add(time.Second); !st.NextRotation.Equal(want) {
		t.Errorf("NextRotation: got %s; want the first retry at %s", st.NextRotation, want)
	}

	expired := start.Add(31 * 24 * time.Hour)
	opts.Now = func() time.Time { return expired }
	if _, err := NewIssuer(opts); err == nil || !strings.Contains(err.Error(), "replace the CA") {
		t.Errorf("NewIssuer with an expired saved leaf and a CA that cannot sign: got %v; want the CA error", err)
	}
}
