package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(newHandler("n7"))
	defer srv.Close()
	tests := []struct {
		path          string
		wantStatus    int
		wantLen       int64 // ContentLength: -1 means chunked
		wantBodyBytes int
		wantInBody    string
	}{
		{path: "/bytes?n=5000", wantStatus: 200, wantLen: 5000, wantBodyBytes: 5000},
		{path: "/bytes?n=5000&chunked=1", wantStatus: 200, wantLen: -1, wantBodyBytes: 5000},
		{path: "/bytes?n=-1", wantStatus: 400, wantLen: -2},
		{path: "/slow?d=10ms", wantStatus: 200, wantLen: -2, wantInBody: "slept 10ms"},
		{path: "/slow?d=2h", wantStatus: 400, wantLen: -2},
		{path: "/actuator/health", wantStatus: 200, wantLen: -2, wantInBody: `"UP"`},
		{path: "/actuator/health/liveness", wantStatus: 200, wantLen: -2, wantInBody: `"UP"`},
		{path: "/actuator/env", wantStatus: 200, wantLen: -2, wantInBody: fakeSecret},
		{path: "/", wantStatus: 200, wantLen: -2, wantInBody: `id="echo"`},
		{path: "/nothing-here", wantStatus: 404, wantLen: -2},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d; want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("X-Node"); got != "n7" {
				t.Errorf("X-Node: got %q; want n7", got)
			}
			if tt.wantLen != -2 && resp.ContentLength != tt.wantLen {
				t.Errorf("ContentLength: got %d; want %d", resp.ContentLength, tt.wantLen)
			}
			if tt.wantBodyBytes > 0 && len(body) != tt.wantBodyBytes {
				t.Errorf("body: got %d bytes; want %d", len(body), tt.wantBodyBytes)
			}
			if !strings.Contains(string(body), tt.wantInBody) {
				t.Errorf("body: got %q; want it to contain %q", body, tt.wantInBody)
			}
		})
	}
}

func TestHeadersEcho(t *testing.T) {
	srv := httptest.NewServer(newHandler("n1"))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/headers/a/b?x=1", nil)
	req.Host = "flowable.example"
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got HeadersReply
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Node != "n1" || got.Method != "PUT" || got.Host != "flowable.example" || got.Path != "/headers/a/b" || got.RequestURI != "/headers/a/b?x=1" {
		t.Errorf("got %+v; want node n1, PUT, host flowable.example, /headers/a/b?x=1", got)
	}
	if v := got.Headers["X-Forwarded-Proto"]; len(v) != 1 || v[0] != "https" {
		t.Errorf("X-Forwarded-Proto: got %q; want [https]", v)
	}
}

func TestWebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(newHandler("n1"))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(maxWSMessage)
	for _, size := range []int{5, 1 << 20, maxWSMessage} {
		msg := bytes.Repeat([]byte{'m'}, size)
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading the echo of %d bytes: %v", size, err)
		}
		if typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
			t.Errorf("echo of %d bytes: got type %v, %d bytes; want binary, equal", size, typ, len(got))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}
