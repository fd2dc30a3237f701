package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Bounds that keep a misbehaving test from exhausting the machine.
const (
	maxWSMessage = 2 << 20 // WebSocket message limit, bytes
	maxBytes     = 1 << 30 // largest /bytes answer
	maxSlow      = time.Minute
	chunkSize    = 32 << 10 // write size of /bytes
)

// zeros is the shared source of /bytes bodies.
var zeros = func() []byte {
	b := make([]byte, chunkSize)
	for i := range b {
		b[i] = 'x'
	}
	return b
}()

// HeadersReply is what /headers answers.
type HeadersReply struct {
	Node       string              `json:"node"`
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	RequestURI string              `json:"request_uri"`
	Proto      string              `json:"proto"`
	RemoteAddr string              `json:"remote_addr"`
	Headers    map[string][]string `json:"headers"`
}

// newHandler returns the stub's routes, each response stamped with X-Node.
func newHandler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, page, name)
	})
	headers := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, HeadersReply{
			Node:       name,
			Method:     r.Method,
			Host:       r.Host,
			Path:       r.URL.Path,
			RequestURI: r.RequestURI,
			Proto:      r.Proto,
			RemoteAddr: r.RemoteAddr,
			Headers:    r.Header,
		})
	}
	mux.HandleFunc("/headers", headers)
	mux.HandleFunc("/headers/", headers)
	mux.HandleFunc("/ws", serveWS)
	mux.HandleFunc("/slow", serveSlow)
	mux.HandleFunc("/bytes", serveBytes)
	mux.HandleFunc("/drip", serveDrip)
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Without full duplex, Go's HTTP/1 server stops reading the body once
		// the response has started, and the echo would be cut short.
		http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	})
	var down atomic.Bool
	health := func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			// As Spring Boot answers when a health component fails.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"status": "DOWN"})
			return
		}
		writeJSON(w, map[string]string{"status": "UP"})
	}
	mux.HandleFunc("PUT /stub/health", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 16))
		switch string(b) {
		case "UP":
			down.Store(false)
		case "DOWN":
			down.Store(true)
		default:
			http.Error(w, "send UP or DOWN", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/actuator/health", health)
	mux.HandleFunc("/actuator/health/", health) // health groups and components
	mux.HandleFunc("/actuator/", func(w http.ResponseWriter, r *http.Request) {
		// Every other actuator endpoint answers, as an unprotected Spring
		// Boot node does; /actuator/env shows a secret.
		writeJSON(w, map[string]any{
			"endpoint": r.URL.Path,
			"propertySources": []any{map[string]any{
				"name":       "systemEnvironment",
				"properties": map[string]any{"FLOWABLE_DB_PASSWORD": map[string]string{"value": fakeSecret}},
			}},
		})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Node", name)
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// serveSlow sleeps ?d= (default 1s) unless the client goes away first.
func serveSlow(w http.ResponseWriter, r *http.Request) {
	d := time.Second
	if s := r.URL.Query().Get("d"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 || d > maxSlow {
			http.Error(w, fmt.Sprintf("d=%q: want a duration from 0 to %v", s, maxSlow), http.StatusBadRequest)
			return
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "slept %v\n", d)
}

// serveDrip streams ?lines= lines of text (default 10), one every ?every=
// (default 100ms), each flushed as it is written: a long poll or a log
// tail as a node sends it.
func serveDrip(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lines, every := 10, 100*time.Millisecond
	if s := q.Get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 10000 {
			http.Error(w, fmt.Sprintf("lines=%q: want a count from 0 to 10000", s), http.StatusBadRequest)
			return
		}
		lines = n
	}
	if s := q.Get("every"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxSlow {
			http.Error(w, fmt.Sprintf("every=%q: want a duration from 0 to %v", s, maxSlow), http.StatusBadRequest)
			return
		}
		every = d
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	t := time.NewTicker(max(every, time.Millisecond))
	defer t.Stop()
	for i := range lines {
		if i > 0 {
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "line %d\n", i)
		if rc.Flush() != nil {
			return
		}
	}
}

// serveBytes answers ?n= bytes (default 1024) of ?type= (default
// application/octet-stream), with Content-Length unless chunked=1.
func serveBytes(w http.ResponseWriter, r *http.Request) {
	n := 1024
	if s := r.URL.Query().Get("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 0 || n > maxBytes {
			http.Error(w, fmt.Sprintf("n=%q: want a byte count from 0 to %d", s, maxBytes), http.StatusBadRequest)
			return
		}
	}
	typ := r.URL.Query().Get("type")
	if typ == "" {
		typ = "application/octet-stream"
	}
	w.Header().Set("Content-Type", typ)
	if r.URL.Query().Get("chunked") == "1" {
		// Flushing the headers first makes net/http use chunked encoding.
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(n))
	}
	if r.Method == http.MethodHead {
		return
	}
	for n > 0 {
		k := min(n, len(zeros))
		if _, err := w.Write(zeros[:k]); err != nil {
			return
		}
		n -= k
	}
}

// serveWS echoes every WebSocket message back with its type until either
// side closes.
func serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil) // the default origin check: Origin must match Host
	if err != nil {
		return // Accept has answered the client
	}
	defer c.CloseNow()
	c.SetReadLimit(maxWSMessage)
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// page is the browser test's page: it proves the WebSocket upgrade works
// through the proxy by writing the echo into #echo (or the failure into
// #error). %s is the node name.
const page = `<!doctype html>
<html>
<head><meta charset="utf-8"><title>flowablestub</title></head>
<body>
<h1>flowablestub node <span id="node">%s</span></h1>
<p>WebSocket echo: <span id="echo"></span></p>
<p>State: <span id="state">connecting</span></p>
<p>Error: <span id="error"></span></p>
<script>
(function () {
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var msg = "hello through flowgate";
  var ws = new WebSocket(scheme + location.host + "/ws");
  var state = document.getElementById("state");
  ws.onopen = function () { state.textContent = "open"; ws.send(msg); };
  ws.onmessage = function (ev) {
    document.getElementById("echo").textContent = ev.data;
    state.textContent = "echoed";
    ws.close(1000, "done");
  };
  ws.onerror = function () {
    document.getElementById("error").textContent = "websocket error";
    state.textContent = "error";
  };
  ws.onclose = function (ev) {
    if (state.textContent !== "echoed") {
      state.textContent = "closed";
      document.getElementById("error").textContent += " closed with code " + ev.code;
    }
  };
})();
</script>
</body>
</html>
`
