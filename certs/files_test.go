package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewFilesFailsFast(t *testing.T) {
	t.Parallel()
	ca := newFixtureCA(t, "startup root")
	good := ca.issue(t, fixtureSpec{})
	expired := ca.issue(t, fixtureSpec{notAfter: time.Now().Add(-time.Hour)})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		fixtureWrite(t, p, data)
		return p
	}
	goodCert, goodKey := write("good.crt", good.certPEM), write("good.key", good.keyPEM)
	expCert, expKey := write("exp.crt", expired.certPEM), write("exp.key", expired.keyPEM)
	garbage := write("garbage.pem", []byte("garbage"))
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name     string
		opts     FilesOptions
		wantErr  error
		wantText []string
	}{
		{name: "no pairs", wantText: []string{"at least one certificate"}},
		{name: "no key file", opts: FilesOptions{Pairs: []Pair{{CertFile: goodCert}}}, wantText: []string{"key file"}},
		{name: "missing certificate", opts: FilesOptions{Pairs: []Pair{{CertFile: missing, KeyFile: goodKey}}},
			wantErr: fs.ErrNotExist, wantText: []string{missing, "check the path"}},
		{name: "garbage key", opts: FilesOptions{Pairs: []Pair{{CertFile: goodCert, KeyFile: garbage}}},
			wantErr: ErrNoPEM, wantText: []string{garbage}},
		{name: "expired second pair", opts: FilesOptions{Pairs: []Pair{{goodCert, goodKey}, {expCert, expKey}}},
			wantErr: ErrExpired, wantText: []string{expCert, "renewed"}},
		{name: "missing client CA", opts: FilesOptions{Pairs: []Pair{{goodCert, goodKey}}, ClientCAFile: missing},
			wantErr: fs.ErrNotExist, wantText: []string{"CA bundle", missing}},
		{name: "garbage client CA", opts: FilesOptions{Pairs: []Pair{{goodCert, goodKey}}, ClientCAFile: garbage},
			wantErr: ErrNoPEM, wantText: []string{"CA bundle", garbage}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Logger = slog.New(slog.DiscardHandler)
			f, err := NewFiles(tt.opts)
			if err == nil {
				t.Fatalf("NewFiles: got %v; want an error", f.Status())
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("NewFiles error: got %v; want it to wrap %v", err, tt.wantErr)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("NewFiles error: got %q; want it to mention %q", err, s)
				}
			}
		})
	}
}

func TestFilesSNISelection(t *testing.T) {
	t.Parallel()
	ca := newFixtureCA(t, "sni root")
	def := ca.issue(t, fixtureSpec{dns: []string{"flowable.example.com"}})
	api := ca.issue(t, fixtureSpec{dns: []string{"api.example.com"}})
	apps := ca.issue(t, fixtureSpec{dns: []string{"*.apps.example.com"}})
	dir := t.TempDir()
	var pairs []Pair
	for i, p := range []*fixturePair{def, api, apps} {
		pair := Pair{CertFile: filepath.Join(dir, string(rune('a'+i))+".crt"), KeyFile: filepath.Join(dir, string(rune('a'+i))+".key")}
		fixtureWrite(t, pair.CertFile, p.certPEM)
		fixtureWrite(t, pair.KeyFile, p.keyPEM)
		pairs = append(pairs, pair)
	}
	f, err := NewFiles(FilesOptions{Pairs: pairs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := startFixtureServer(t, filesServerConfig(f))

	tests := []struct {
		sni  string
		want string
	}{
		{sni: "", want: def.serial},
		{sni: "flowable.example.com", want: def.serial},
		{sni: "API.example.com", want: api.serial},
		{sni: "x.apps.example.com", want: apps.serial},
		{sni: "a.b.apps.example.com", want: def.serial}, // a wildcard covers one label
		{sni: "unknown.example.org", want: def.serial},
	}
	for _, tt := range tests {
		t.Run("sni="+tt.sni, func(t *testing.T) {
			if got := srv.served(t, tt.sni); got != tt.want {
				t.Errorf("served serial: got %s; want %s", got, tt.want)
			}
		})
	}
}

// TestFilesServesVerifiableChain checks that the intermediate in the file is
// sent, so a client that trusts only the root verifies the server.
func TestFilesServesVerifiableChain(t *testing.T) {
	t.Parallel()
	root := newFixtureCA(t, "chain root")
	inter := root.issue(t, fixtureSpec{isCA: true})
	leaf := inter.asCA().issue(t, fixtureSpec{})
	dir := t.TempDir()
	pair := Pair{CertFile: filepath.Join(dir, "fullchain.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	fixtureWrite(t, pair.CertFile, fixtureJoin(leaf.certPEM, inter.certPEM))
	fixtureWrite(t, pair.KeyFile, leaf.keyPEM)
	f, err := NewFiles(FilesOptions{Pairs: []Pair{pair}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := startFixtureServer(t, filesServerConfig(f))

	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	conn, err := tls.Dial("tcp", srv.addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("verified handshake: %v", err)
	}
	defer conn.Close()
	if got := len(conn.ConnectionState().PeerCertificates); got != 2 {
		t.Errorf("certificates sent: got %d; want 2 (leaf and intermediate)", got)
	}
}

func TestFilesStatusAndMetrics(t *testing.T) {
	t.Parallel()
	ca := newFixtureCA(t, "status root")
	old, next := ca.issue(t, fixtureSpec{}), ca.issue(t, fixtureSpec{})
	dir := t.TempDir()
	pair := Pair{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	fixtureWrite(t, pair.CertFile, old.certPEM)
	fixtureWrite(t, pair.KeyFile, old.keyPEM)

	clock := time.Now().Truncate(time.Second)
	now := func() time.Time { return clock }
	reg := prometheus.NewPedanticRegistry()
	f, err := NewFiles(FilesOptions{
		Pairs:      []Pair{pair},
		Registerer: reg,
		Now:        now,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Describe(pair.CertFile, "file", &tls.Certificate{Leaf: old.cert})
	want.LastReload = clock
	if diff := cmp.Diff([]Info{want}, f.Status()); diff != "" {
		t.Errorf("Status after load (-want +got):\n%s", diff)
	}

	// Reload without Run: check is what every trigger calls.
	clock = clock.Add(time.Minute)
	fixtureWrite(t, pair.CertFile, next.certPEM)
	fixtureWrite(t, pair.KeyFile, next.keyPEM)
	f.check()
	want = Describe(pair.CertFile, "file", &tls.Certificate{Leaf: next.cert})
	want.LastReload = clock
	if diff := cmp.Diff([]Info{want}, f.Status()); diff != "" {
		t.Errorf("Status after reload (-want +got):\n%s", diff)
	}

	wantMetrics := "# HELP " + MetricNotAfter + " NotAfter of each served certificate as a Unix timestamp.\n" +
		"# TYPE " + MetricNotAfter + " gauge\n" +
		MetricNotAfter + `{name="` + pair.CertFile + `",serial="` + next.serial + `"} ` + fmt.Sprint(next.cert.NotAfter.Unix()) + "\n" +
		"# HELP " + MetricLastReloadSuccess + " Unix timestamp of the last successful certificate load.\n" +
		"# TYPE " + MetricLastReloadSuccess + " gauge\n" +
		MetricLastReloadSuccess + `{name="` + pair.CertFile + `"} ` + fmt.Sprint(clock.Unix()) + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantMetrics), MetricNotAfter, MetricLastReloadSuccess); err != nil {
		t.Errorf("metrics after reload (old serial must be gone): %v", err)
	}
}

func TestFilesExpiryWarning(t *testing.T) {
	t.Parallel()
	ca := newFixtureCA(t, "expiry root")
	p := ca.issue(t, fixtureSpec{notAfter: time.Now().Add(3 * 24 * time.Hour)})
	dir := t.TempDir()
	pair := Pair{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	fixtureWrite(t, pair.CertFile, p.certPEM)
	fixtureWrite(t, pair.KeyFile, p.keyPEM)

	tests := []struct {
		name    string
		warning time.Duration
		want    int
	}{
		{name: "default 7 days", warning: 0, want: 1},
		{name: "1 day", warning: 24 * time.Hour, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &fixtureLog{}
			_, err := NewFiles(FilesOptions{
				Pairs:         []Pair{pair},
				ExpiryWarning: tt.warning,
				Logger:        slog.New(slog.NewTextHandler(logs, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := logs.count("certificate expires soon"); got != tt.want {
				t.Errorf("expiry warnings: got %d; want %d\n%s", got, tt.want, logs)
			}
		})
	}
}

// TestFilesClientCAReload replaces the client CA bundle under a running
// Files and checks with real mutual-TLS handshakes which client is admitted.
func TestFilesClientCAReload(t *testing.T) {
	t.Parallel()
	serverCA, ca1, ca2 := newFixtureCA(t, "server root"), newFixtureCA(t, "clients one"), newFixtureCA(t, "clients two")
	server := serverCA.issue(t, fixtureSpec{})
	client1 := ca1.issue(t, fixtureSpec{client: true})
	client2 := ca2.issue(t, fixtureSpec{client: true})
	dir := t.TempDir()
	pair := Pair{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	caFile := filepath.Join(dir, "clients.pem")
	fixtureWrite(t, pair.CertFile, server.certPEM)
	fixtureWrite(t, pair.KeyFile, server.keyPEM)
	fixtureWrite(t, caFile, ca1.certPEM)

	reg := prometheus.NewPedanticRegistry()
	f, err := NewFiles(FilesOptions{
		Pairs:           []Pair{pair},
		ClientCAFile:    caFile,
		Debounce:        30 * time.Millisecond,
		RecheckInterval: time.Hour,
		Registerer:      reg,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	runFiles(t, f)
	srv := startFixtureServer(t, filesServerConfig(f))
	admitted := func(c *fixturePair) bool {
		cert := tls.Certificate{Certificate: [][]byte{c.cert.Raw}, PrivateKey: c.key}
		_, err := srv.handshake(t, "", &cert)
		return err == nil
	}
	caReloads := func(result string) int {
		return int(testutil.ToFloat64(f.metrics.reloads.WithLabelValues(caFile, result)))
	}

	if !admitted(client1) || admitted(client2) {
		t.Fatalf("with bundle one: got client1 %t, client2 %t; want true, false", admitted(client1), admitted(client2))
	}

	// A broken bundle keeps the old one.
	fixtureWrite(t, caFile, []byte("garbage"))
	fixtureWait(t, "1 failed CA reload", func() (bool, string) {
		n := caReloads(ResultFailure)
		return n == 1, fmt.Sprintf("%d failed CA reloads", n)
	})
	if !admitted(client1) {
		t.Error("after a broken bundle: client1 refused; want the old bundle kept")
	}

	// Both CAs, written with a rename.
	fixtureWrite(t, caFile+".tmp", fixtureJoin(ca2.certPEM, ca1.certPEM))
	if err := os.Rename(caFile+".tmp", caFile); err != nil {
		t.Fatal(err)
	}
	fixtureWait(t, "client2 admitted", func() (bool, string) {
		ok := admitted(client2)
		return ok, fmt.Sprintf("client2 admitted %t", ok)
	})
	if !admitted(client1) {
		t.Error("with both CAs: client1 refused; want admitted")
	}
	if got := caReloads(ResultSuccess); got != 2 {
		t.Errorf("successful CA loads: got %d; want 2", got)
	}
}
