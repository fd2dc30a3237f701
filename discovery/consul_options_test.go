package discovery

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestNewConsulValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		edit    func(*ConsulOptions)
		wantErr string
	}{
		{"no services", func(o *ConsulOptions) { o.Services = nil }, "no service names"},
		{"empty service", func(o *ConsulOptions) { o.Services = []string{" "} }, "empty service name"},
		{"service twice", func(o *ConsulOptions) { o.Services = []string{"a", "a"} }, "listed twice"},
		{"service with a slash", func(o *ConsulOptions) { o.Services = []string{"a/b"} }, "slash"},
		{"empty tag", func(o *ConsulOptions) { o.Tags = []string{""} }, "empty tag"},
		{"negative min interval", func(o *ConsulOptions) { o.MinInterval = -time.Second }, "negative"},
		{"min interval over a minute", func(o *ConsulOptions) { o.MinInterval = 2 * time.Minute }, "over a minute"},
		{"wait time too short", func(o *ConsulOptions) { o.WaitTime = 100 * time.Millisecond }, "outside 1s..10m"},
		{"wait time too long", func(o *ConsulOptions) { o.WaitTime = 11 * time.Minute }, "outside 1s..10m"},
		{"max backoff too small", func(o *ConsulOptions) { o.MaxBackoff = time.Millisecond }, "below 10ms"},
		{"client cert without key", func(o *ConsulOptions) { o.TLS.CertFile = "c.pem" }, "must be set together"},
		{"missing CA file", func(o *ConsulOptions) { o.TLS.CAFile = filepath.Join(dir, "nope.pem") }, "nope.pem"},
		{"missing token file", func(o *ConsulOptions) { o.TokenFile = filepath.Join(dir, "token") }, "token"},
		{"unknown address scheme", func(o *ConsulOptions) { o.Address = "ftp://consul:8500" }, "ftp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ConsulOptions{Services: []string{"flowable"}}
			tt.edit(&o)
			_, err := NewConsul(o)
			if !errors.Is(err, ErrConsulOptions) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewConsul: got %v; want ErrConsulOptions containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestNewConsulEnvironment checks that Consul's environment variables apply
// and that options override them.
func TestNewConsulEnvironment(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "10.1.2.3:8500")
	c, err := NewConsul(ConsulOptions{Services: []string{"flowable"}})
	if err != nil {
		t.Fatalf("NewConsul: %v", err)
	}
	if got := c.Status().Address; got != "10.1.2.3:8500" {
		t.Errorf("address from CONSUL_HTTP_ADDR: got %q; want 10.1.2.3:8500", got)
	}
	o := ConsulOptions{Services: []string{"flowable"}}
	o.Address = "https://consul.example:8501"
	if c, err = NewConsul(o); err != nil {
		t.Fatalf("NewConsul: %v", err)
	}
	if got := c.Status().Address; got != "consul.example:8501" {
		t.Errorf("address from the options: got %q; want consul.example:8501", got)
	}
}

// TestConsulTokenFileRotation checks that a rewritten token file is used by
// the next query without a restart.
func TestConsulTokenFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write := func(tok string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	write("token-one", time.Unix(1_700_000_000, 0))
	synctest.Test(t, func(t *testing.T) {
		f := newFakeConsul()
		f.set(1, "flowable", entry("a", "10.0.0.1", 8090))
		opts := fakeOptions(f, nil)
		opts.TokenFile = path
		_, ups := runConsul(t, opts)
		nextUpdate(t, ups)
		time.Sleep(time.Second) // the watch now blocks with token-one

		write("token-two", time.Unix(1_700_000_100, 0))
		f.set(2, "flowable", entry("b", "10.0.0.2", 8090))
		time.Sleep(time.Second)
		nextUpdate(t, ups)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		f.set(3, "flowable", entry("c", "10.0.0.3", 8090))
		time.Sleep(time.Second)
		nextUpdate(t, ups)

		var got []string
		for _, q := range f.queryLog() {
			got = append(got, q.token)
		}
		want := []string{"token-one", "token-one", "token-two", "token-two"}
		if len(got) < 4 || strings.Join(got[:4], ",") != strings.Join(want, ",") {
			t.Errorf("tokens sent: got %v; want %v then token-two kept after the file vanished", got, want)
		}
		for _, tok := range got[3:] {
			if tok != "token-two" {
				t.Errorf("token after the file vanished: got %q; want the last one, token-two", tok)
			}
		}
	})
}
