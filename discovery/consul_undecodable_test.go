package discovery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// An answer that makes the Consul API client's decoder panic (found by
// FuzzUpstreamsFromEntries) is an error for the watch, not a crash.
func TestQueryUndecodableAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Consul-Index", "7")
		w.Write([]byte(`[{"Checks":[{"Definition":null}]}]`))
	}))
	defer srv.Close()
	c, err := NewConsul(ConsulOptions{
		ConsulClientOptions: ConsulClientOptions{Address: strings.TrimPrefix(srv.URL, "http://")},
		Services:            []string{"flowable"},
		WaitTime:            time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := c.query(context.Background(), "flowable", 0)
	if err == nil || !strings.Contains(err.Error(), "cannot be decoded") {
		t.Fatalf("query = %v, %v; want an error saying the answer cannot be decoded", entries, err)
	}
}
