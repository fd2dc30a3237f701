package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// checkPeer proves that a peer is set up like the others before anything
// is measured: the forwarding headers reach the upstream (client-sent
// X-Forwarded-For dropped), HTTP/2 is negotiated, 1 KiB arrives whole, a
// WebSocket echoes, and resumption-probe requests are marked.
func checkPeer(ctx context.Context, p *peer) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(nil)}}
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS([]string{"h2", "http/1.1"}), ForceAttemptHTTP2: true}}
	defer h1.CloseIdleConnections()
	defer h2.CloseIdleConnections()
	base := "https://" + p.addr()

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/headers", nil)
	req.Header.Set("X-Forwarded-For", "192.0.2.7")
	body, resp, err := do(h1, req)
	if err != nil {
		return err
	}
	got := parseHeaderBlock(body)
	want := map[string]string{
		"Host":              p.addr(),
		"X-Forwarded-For":   "127.0.0.1",
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-Proto": "https",
	}
	for k, v := range want {
		if got[k] != v {
			return fmt.Errorf("upstream saw %s %q; want %q (request headers: %q)", k, got[k], v, body)
		}
	}
	if resp.ProtoMajor != 1 {
		return fmt.Errorf("HTTP/1.1 client got %s", resp.Proto)
	}

	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/bytes?n=1024", nil)
	body, resp, err = do(h2, req)
	if err != nil {
		return err
	}
	if resp.ProtoMajor != 2 || len(body) != 1024 {
		return fmt.Errorf("/bytes?n=1024 over h2: got %s with %d bytes; want HTTP/2.0 with 1024", resp.Proto, len(body))
	}

	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/bytes?n=102400&chunked=1", nil)
	body, resp, err = do(h1, req)
	if err != nil {
		return err
	}
	if len(body) != 102400 {
		return fmt.Errorf("/bytes?n=102400&chunked=1: got %d bytes; want 102400", len(body))
	}

	if p.name != "flowgate" {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/tls/bytes?n=16", nil)
		if _, resp, err = do(h1, req); err != nil {
			return err
		}
		if resp.Header.Get("X-TLS-Resumed") == "" {
			return fmt.Errorf("/tls/ response carries no X-TLS-Resumed header")
		}
	}

	ws, err := dialWS(ctx, p.addr(), "/ws")
	if err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	defer ws.close()
	if err := ws.roundTrip([]byte(strings.Repeat("x", 1024))); err != nil {
		return fmt.Errorf("websocket echo: %w", err)
	}
	return nil
}

func do(c *http.Client, req *http.Request) ([]byte, *http.Response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: reading body: %w", req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s: %q", req.URL, resp.Status, body)
	}
	return body, resp, nil
}

// parseHeaderBlock reads "Name: value" lines into canonical names; a
// repeated header keeps its values joined by ", ".
func parseHeaderBlock(b []byte) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		v := strings.TrimSpace(value)
		if prev, ok := out[k]; ok {
			v = prev + ", " + v
		}
		out[k] = v
	}
	return out
}
