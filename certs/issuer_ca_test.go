package certs

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOpenCACreatesAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	opts := CAOptions{StateDir: dir, Now: func() time.Time { return now }}
	ca, err := OpenCA(opts)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Certificate()
	checks := []struct {
		what      string
		got, want any
	}{
		{"IsCA", c.IsCA, true},
		{"BasicConstraintsValid", c.BasicConstraintsValid, true},
		{"MaxPathLen", c.MaxPathLen, 0},
		{"MaxPathLenZero", c.MaxPathLenZero, true},
		{"KeyUsage", c.KeyUsage, x509.KeyUsageCertSign | x509.KeyUsageCRLSign},
		{"NotBefore", c.NotBefore, now.Add(-time.Hour)},
		{"NotAfter", c.NotAfter, now.Add(DefaultCALifetime)},
		{"key type", KeyType(c), "ECDSA P-256"},
		{"SubjectKeyId length", len(c.SubjectKeyId), 20},
		{"serial bits > 64", c.SerialNumber.BitLen() > 64, true},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("CA %s: got %v; want %v", ck.what, ck.got, ck.want)
		}
	}
	if m := fileMode(t, dir); m != 0o700 {
		t.Errorf("state dir mode: got %o; want 700", m)
	}
	if m := fileMode(t, filepath.Join(dir, CAKeyFileName)); m != 0o600 {
		t.Errorf("CA key mode: got %o; want 600", m)
	}
	if m := fileMode(t, filepath.Join(dir, CACertFileName)); m != 0o644 {
		t.Errorf("CA cert mode: got %o; want 644", m)
	}
	if bytes.Contains(ca.CertificatePEM(), []byte("PRIVATE KEY")) {
		t.Error("CertificatePEM contains a private key")
	}

	again, err := OpenCA(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificate().Raw, c.Raw) {
		t.Errorf("second OpenCA: got CA serial %s; want the saved %s", SerialHex(again.Certificate()), SerialHex(c))
	}
}

func TestOpenCACorruptMovedAside(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
	}{
		{name: "garbage certificate", corrupt: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, CACertFileName), []byte("garbage"), 0o644)
		}},
		{name: "key missing", corrupt: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, CAKeyFileName))
		}},
		{name: "not a CA", corrupt: func(t *testing.T, dir string) {
			kp, err := SelfSign(LeafOptions{Hosts: []string{"x.test"}})
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, CACertFileName), kp.CertPEM, 0o644)
			os.WriteFile(filepath.Join(dir, CAKeyFileName), kp.KeyPEM, 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first, err := OpenCA(CAOptions{StateDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			tt.corrupt(t, dir)
			var before []byte
			before, _ = os.ReadFile(filepath.Join(dir, CACertFileName))
			var log issuerLog
			second, err := OpenCA(CAOptions{StateDir: dir, Logger: newTestLogger(&log)})
			if err != nil {
				t.Fatalf("OpenCA over corrupt state: %v", err)
			}
			if bytes.Equal(second.Certificate().Raw, first.Certificate().Raw) {
				t.Error("OpenCA over corrupt state: got the old CA; want a new one")
			}
			moved := globAll(t, filepath.Join(dir, CACertFileName+".corrupt-*"))
			if before != nil {
				if len(moved) != 1 {
					t.Fatalf("moved-aside certificates: got %v; want one", moved)
				}
				if got, _ := os.ReadFile(moved[0]); !bytes.Equal(got, before) {
					t.Errorf("moved-aside content: got %q; want the corrupt original %q", got, before)
				}
			}
			if !strings.Contains(log.String(), "corrupt") {
				t.Errorf("log: got %q; want a report of the corrupt CA", log.String())
			}
		})
	}
}

func TestOpenCAReplacesExpiring(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	old, err := OpenCA(CAOptions{StateDir: dir, Lifetime: 100 * 24 * time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(50 * 24 * time.Hour)
	same, err := OpenCA(CAOptions{StateDir: dir, ReplaceWithin: 30 * 24 * time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(same.Certificate().Raw, old.Certificate().Raw) {
		t.Fatal("CA with 50 days left and ReplaceWithin 30 days: replaced; want kept")
	}
	now = now.Add(30 * 24 * time.Hour)
	renewed, err := OpenCA(CAOptions{StateDir: dir, ReplaceWithin: 30 * 24 * time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(renewed.Certificate().Raw, old.Certificate().Raw) {
		t.Fatal("CA with 20 days left and ReplaceWithin 30 days: kept; want replaced")
	}
	if got := globAll(t, filepath.Join(dir, "ca.*.expired-*")); len(got) != 2 {
		t.Errorf("files moved aside: got %v; want ca.crt and ca.key", got)
	}
}

func TestOpenCAUserProvided(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	user := newTestUserCA(t, dir, "corp", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	ca, err := OpenCA(CAOptions{CertFile: user.certPath, KeyFile: user.keyPath})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.Certificate().Raw, user.cert.Raw) {
		t.Error("user-provided CA: got another certificate; want the user's")
	}
	if !bytes.Equal(ca.CertificatePEM(), user.certPEM) {
		t.Errorf("CertificatePEM: got %q; want the user's certificate", ca.CertificatePEM())
	}
	kp, err := ca.Issue(LeafOptions{Hosts: issuerTestHosts})
	if err != nil {
		t.Fatal(err)
	}
	verifyServerLeaf(t, kp.Certificate.Leaf, caPool(t, user.certPEM), []string{"flowgate.test", "127.0.0.1"}, now)

	leafDir := t.TempDir()
	notCA, err := SelfSign(LeafOptions{Hosts: []string{"x.test"}})
	if err != nil {
		t.Fatal(err)
	}
	notCAPaths := [2]string{filepath.Join(leafDir, "c"), filepath.Join(leafDir, "k")}
	if err := notCA.WriteFiles(notCAPaths[0], notCAPaths[1]); err != nil {
		t.Fatal(err)
	}
	expired := newTestUserCA(t, dir, "old", now.Add(-48*time.Hour), now.Add(-time.Hour))
	errTests := []struct {
		name, cert, key, want string
	}{
		{"cert without key", user.certPath, "", "configured together"},
		{"missing file", filepath.Join(dir, "nope.crt"), user.keyPath, "nope.crt"},
		{"wrong key", user.certPath, expired.keyPath, "corp.crt"},
		{"not a CA", notCAPaths[0], notCAPaths[1], "not a CA"},
		{"expired", expired.certPath, expired.keyPath, "expired"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenCA(CAOptions{CertFile: tt.cert, KeyFile: tt.key})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenCA: got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestCAIssue(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	ca, err := OpenCA(CAOptions{StateDir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		opts      LeafOptions
		wantUsage x509.KeyUsage
		wantKey   string
	}{
		{
			name:      "p256 default lifetime",
			opts:      LeafOptions{Hosts: issuerTestHosts},
			wantUsage: x509.KeyUsageDigitalSignature,
			wantKey:   "ECDSA P-256",
		},
		{
			name:      "rsa2048 one year",
			opts:      LeafOptions{Hosts: issuerTestHosts, KeyType: KeyRSA2048, Lifetime: 365 * 24 * time.Hour},
			wantUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			wantKey:   "RSA 2048",
		},
		{
			name:      "p384",
			opts:      LeafOptions{Hosts: issuerTestHosts, KeyType: KeyP384},
			wantUsage: x509.KeyUsageDigitalSignature,
			wantKey:   "ECDSA P-384",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = func() time.Time { return now }
			kp, err := ca.Issue(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			leaf := kp.Certificate.Leaf
			lifetime := tt.opts.Lifetime
			if lifetime == 0 {
				lifetime = DefaultLeafLifetime
			}
			checkLeafShape(t, leaf, now, lifetime, tt.wantUsage, tt.wantKey)
			if !bytes.Equal(leaf.AuthorityKeyId, ca.Certificate().SubjectKeyId) {
				t.Errorf("AuthorityKeyId: got %x; want the CA's SubjectKeyId %x", leaf.AuthorityKeyId, ca.Certificate().SubjectKeyId)
			}
			if leaf.IsCA {
				t.Error("leaf IsCA: got true; want false")
			}
			verifyServerLeaf(t, leaf, caPool(t, ca.CertificatePEM()), issuerTestHosts, now)
		})
	}
}

// checkLeafShape checks the fields every issued leaf must have.
func checkLeafShape(t *testing.T, leaf *x509.Certificate, now time.Time, lifetime time.Duration, usage x509.KeyUsage, keyType string) {
	t.Helper()
	if got, want := leaf.NotBefore, now.Add(-time.Hour); !got.Equal(want) {
		t.Errorf("NotBefore: got %s; want %s (backdated one hour)", got, want)
	}
	if got, want := leaf.NotAfter, now.Add(lifetime); !got.Equal(want) {
		t.Errorf("NotAfter: got %s; want %s", got, want)
	}
	if leaf.KeyUsage != usage {
		t.Errorf("KeyUsage: got %v; want %v", leaf.KeyUsage, usage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage: got %v; want [serverAuth]", leaf.ExtKeyUsage)
	}
	if got := KeyType(leaf); got != keyType {
		t.Errorf("key type: got %q; want %q", got, keyType)
	}
	if len(leaf.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId: got %x; want 20 bytes", leaf.SubjectKeyId)
	}
	if bits := leaf.SerialNumber.BitLen(); bits < 100 || bits > 128 {
		t.Errorf("serial bits: got %d; want a 128-bit random number", bits)
	}
	if !slices.Equal(leaf.DNSNames, []string{"flowgate.test", "localhost"}) {
		t.Errorf("DNSNames: got %v; want [flowgate.test localhost]", leaf.DNSNames)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"127.0.0.1", "::1"}) {
		t.Errorf("IPAddresses: got %v; want [127.0.0.1 ::1]", ips)
	}
	if leaf.Subject.CommonName != "flowgate.test" {
		t.Errorf("CommonName: got %q; want flowgate.test", leaf.Subject.CommonName)
	}
}

func TestCAIssueRefusesLeafOutlivingCA(t *testing.T) {
	now := time.Now()
	ca, err := OpenCA(CAOptions{StateDir: t.TempDir(), Lifetime: 10 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ca.Issue(LeafOptions{Hosts: issuerTestHosts, Now: func() time.Time { return now }})
	if err == nil || !strings.Contains(err.Error(), "replace the CA") {
		t.Errorf("Issue of a 30-day leaf from a 10-day CA: got %v; want an error saying to replace the CA", err)
	}
}

func TestSelfSign(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	kp, err := SelfSign(LeafOptions{Hosts: issuerTestHosts, KeyType: KeyRSA2048, Lifetime: 365 * 24 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	leaf := kp.Certificate.Leaf
	checkLeafShape(t, leaf, now, 365*24*time.Hour, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, "RSA 2048")
	if !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
		t.Errorf("issuer: got %s; want the subject %s", leaf.Issuer, leaf.Subject)
	}
	if leaf.IsCA {
		t.Error("self-signed leaf IsCA: got true; want false (browsers reject CA certificates as servers)")
	}
	verifyServerLeaf(t, leaf, caPool(t, kp.CertPEM), issuerTestHosts, now)
}

func TestLeafOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts LeafOptions
		want string
	}{
		{"no hosts", LeafOptions{}, "no hosts"},
		{"host with port", LeafOptions{Hosts: []string{"example.com:443"}}, "without scheme, port or path"},
		{"url", LeafOptions{Hosts: []string{"https://example.com"}}, "without scheme, port or path"},
		{"too long", LeafOptions{Hosts: issuerTestHosts, Lifetime: 826 * 24 * time.Hour}, "at most 825 days"},
		{"bad key", LeafOptions{Hosts: issuerTestHosts, KeyType: "dsa"}, "unknown key type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SelfSign(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("SelfSign: got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseHosts(t *testing.T) {
	hs, err := parseHosts([]string{"Example.COM.", "[::1]", "*.svc.test", "example.com", "10.0.0.1", "::1", "under_score.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hs.String(), "example.com,*.svc.test,under_score.test,::1,10.0.0.1"; got != want {
		t.Errorf("parseHosts: got %q; want %q", got, want)
	}
	for _, bad := range []string{"", "a..b", "-a.test", "*", "a.*.test", "space here", "x/y"} {
		if _, err := parseHosts([]string{bad}); err == nil {
			t.Errorf("parseHosts(%q): got nil error; want one", bad)
		}
	}
}
