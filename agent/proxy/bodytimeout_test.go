package proxy

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that stops sending its body gets 408 once the wait passes
// ClientBodyTimeout, over HTTP/1.1 and HTTP/2, and the upstream is not
// held responsible; one that sends slowly but keeps sending, each piece
// within the timeout, gets its whole body through however long it takes.
func TestClientBodyTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			a := newBackend(t, "a", nil)
			p := newTestProxy(t, Options{ClientBodyTimeout: timeout, MaxFails: 1, FailTimeout: time.Minute}, a.upstream())
			url, c := frontProto(t, p, proto)

			// Stalls after 5 of 100 bytes.
			pr, pw := io.Pipe()
			defer pw.Close()
			go pw.Write([]byte("hello"))
			// Unanswered, the client gives up, rather than wait forever
			// for the rest of its own body.
			giveUp := time.AfterFunc(timeout+3*time.Second, func() { pw.CloseWithError(errors.New("no answer to the stalled upload")) })
			defer giveUp.Stop()
			req, _ := http.NewRequest(http.MethodPost, url+"/upload", pr)
			req.ContentLength = 100
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("stalled upload: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != http.StatusRequestTimeout || string(body) != "request body timed out\n" {
				t.Fatalf("stalled upload: got %d %q; want 408", resp.StatusCode, body)
			}
			if took < timeout || took > timeout+2*time.Second {
				t.Errorf("stalled upload answered after %v; want about %v", took, timeout)
			}
			if resp.ProtoMajor != 2 && resp.Header.Get("Connection") != "close" && !resp.Close {
				t.Errorf("HTTP/1.1 408 without Connection: close")
			}

			// A slow upload, a byte every 100 ms for 1.2 s, goes through.
			pr, pw = io.Pipe()
			go func() {
				for range 12 {
					time.Sleep(timeout / 3)
					pw.Write([]byte("x"))
				}
				pw.Close()
			}()
			req, _ = http.NewRequest(http.MethodPost, url+"/slow", pr)
			req.ContentLength = 12
			if status, body, _ := do(t, c, req); status != http.StatusOK || body != "a" {
				t.Fatalf("slow upload: got %d %q; want 200 a (the upstream was ejected, or the timeout counted the whole upload)", status, body)
			}
			a.mu.Lock()
			last := a.bodies[len(a.bodies)-1]
			a.mu.Unlock()
			if last != strings.Repeat("x", 12) {
				t.Errorf("slow upload: upstream got %q; want the 12 bytes", last)
			}
		})
	}
}
