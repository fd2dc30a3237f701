package agent

import (
	"net/http"
	"testing"
)

func TestMisdirected(t *testing.T) {
	named := newRedirector(&Config{ServerNames: []string{"flowable.example.com", "*.apps.example.com"}, Listen: ListenConfig{HTTPS: ":443"}}, nil)
	reject := newRedirector(&Config{ServerNames: []string{"flowable.example.com"}, UnknownHost: "reject", Listen: ListenConfig{HTTPS: ":8443"}}, nil)
	open := newRedirector(&Config{Listen: ListenConfig{HTTPS: ":8443"}}, nil)
	tests := []struct {
		name       string
		rd         *redirector
		host       string
		wantOK     bool
		wantTarget string
		wantCode   int
	}{
		{"server name", named, "flowable.example.com", true, "", 0},
		{"server name with port", named, "flowable.example.com:443", true, "", 0},
		{"upper case, trailing dot", named, "FLOWABLE.example.com.", true, "", 0},
		{"wildcard", named, "tasks.apps.example.com", true, "", 0},
		{"wildcard is one label deep", named, "a.b.apps.example.com", false, "https://flowable.example.com/x?y=1", 0},
		{"foreign host goes to the server name", named, "evil.example.net", false, "https://flowable.example.com/x?y=1", 0},
		{"IP address is not a server name", named, "10.0.0.1", false, "https://flowable.example.com/x?y=1", 0},
		{"foreign host rejected", reject, "evil.example.net", false, "", http.StatusMisdirectedRequest},
		{"no server names: every host", open, "anything.example", true, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, code, ok := tt.rd.misdirected(tt.host, "/x?y=1")
			if ok != tt.wantOK || target != tt.wantTarget || code != tt.wantCode {
				t.Errorf("misdirected(%q) = %q, %d, %v; want %q, %d, %v", tt.host, target, code, ok, tt.wantTarget, tt.wantCode, tt.wantOK)
			}
		})
	}
}
