package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// The upstream is a deliberately small HTTP/1.1 server: it parses just
// enough of a request to route it and answers from precomputed bytes, so
// that the proxies, not the stand-in, set the pace. It serves
//
//	/bytes?n=N             N bytes with Content-Length
//	/bytes?n=N&chunked=1   N bytes, chunked, without Content-Length
//	/json?n=N              N bytes of a Flowable REST task list, application/json
//	/headers               the request header block as text/plain
//	/ws                    a WebSocket echo
//	anything else          "ok\n"
//
// A leading /tls is ignored (peers mark resumption-probe requests with it).

// maxBytes bounds /bytes?n=.
const maxBytes = 16 << 20

// upstreamListening starts the line on stdout that gives a node's address,
// which startUpstream reads.
const upstreamListening = "flowbench upstream listening on "

// runUpstream serves one stand-in node per --addr, all in one process: on
// the load core, each process more would cost a switch between processes
// per request, load the proxies cannot see.
func runUpstream(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("flowbench upstream", flag.ContinueOnError)
	addrs := fs.String("addr", "127.0.0.1:0", "comma-separated listen `ADDRS`, one per node")
	names := fs.String("name", "up", "comma-separated node `NAMES`, sent as X-Node, one per address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addrList, nameList := strings.Split(*addrs, ","), strings.Split(*names, ",")
	if len(addrList) != len(nameList) {
		return fmt.Errorf("upstream: %d addresses and %d names; give one name per address", len(addrList), len(nameList))
	}
	lns := make([]net.Listener, 0, len(addrList))
	for _, a := range addrList {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("upstream: listening on %q: %w", a, err)
		}
		lns = append(lns, ln)
	}
	errs := make(chan error, len(lns))
	for i, ln := range lns {
		fmt.Fprintf(stdout, "%s%s\n", upstreamListening, ln.Addr())
		go func() { errs <- newUpstreamServer(nameList[i]).serve(ctx, ln) }()
	}
	// A node that fails ends the process, and with it the run's checks.
	for range lns {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

type upstreamServer struct {
	name      string
	responses sync.Map // bytesKey -> []byte
	ok        []byte

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

type bytesKey struct {
	n       int
	chunked bool
	json    bool
}

func newUpstreamServer(name string) *upstreamServer {
	return &upstreamServer{
		name:  name,
		ok:    []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nX-Node: " + name + "\r\n\r\nok\n"),
		conns: make(map[net.Conn]struct{}),
	}
}

// serve accepts connections until ctx is cancelled, then closes them all.
func (s *upstreamServer) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("upstream: accepting: %w", err)
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		wg.Go(func() {
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		})
	}
}

// request is what the upstream needs to know of a request.
type request struct {
	path, query   string
	http10        bool
	close         bool
	contentLength int64
	chunkedBody   bool
	upgrade       bool
	wsKey         string
	header        []byte // the raw header block, kept for /headers only
}

var errBadRequest = errors.New("bad request")

// readRequest reads a request line and headers.
func readRequest(br *bufio.Reader, keepHeader func(path string) bool) (request, error) {
	var r request
	line, err := br.ReadSlice('\n')
	if err != nil {
		return r, err
	}
	parts := bytes.SplitN(bytes.TrimRight(line, "\r\n"), []byte(" "), 3)
	if len(parts) != 3 {
		return r, errBadRequest
	}
	target := string(parts[1])
	r.path, r.query, _ = strings.Cut(target, "?")
	r.http10 = string(parts[2]) == "HTTP/1.0"
	r.close = r.http10
	keep := keepHeader(r.path)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return r, err
		}
		if keep {
			r.header = append(r.header, line...)
		}
		l := bytes.TrimRight(line, "\r\n")
		if len(l) == 0 {
			return r, nil
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return r, errBadRequest
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return r, errBadRequest
			}
			r.contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			r.chunkedBody = true
		case bytes.EqualFold(name, []byte("Connection")):
			for t := range bytes.SplitSeq(value, []byte(",")) {
				t = bytes.TrimSpace(t)
				switch {
				case bytes.EqualFold(t, []byte("close")):
					r.close = true
				case bytes.EqualFold(t, []byte("keep-alive")):
					r.close = false
				}
			}
		case bytes.EqualFold(name, []byte("Upgrade")):
			r.upgrade = bytes.EqualFold(value, []byte("websocket"))
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Key")):
			r.wsKey = string(value)
		}
	}
}

func (s *upstreamServer) serveConn(c net.Conn) {
	br := bufio.NewReaderSize(c, 4<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	keepHeader := func(path string) bool { return strings.TrimPrefix(path, "/tls") == "/headers" }
	for {
		r, err := readRequest(br, keepHeader)
		if err != nil {
			if errors.Is(err, errBadRequest) || errors.Is(err, bufio.ErrBufferFull) {
				io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}
			return
		}
		if r.chunkedBody {
			io.WriteString(c, "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		if r.contentLength > 0 {
			if _, err := io.CopyN(io.Discard, br, r.contentLength); err != nil {
				return
			}
		}
		path := strings.TrimPrefix(r.path, "/tls")
		switch {
		case path == "/ws" && r.upgrade && r.wsKey != "":
			fmt.Fprintf(bw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Node: %s\r\n\r\n", websocketAccept(r.wsKey), s.name)
			if bw.Flush() != nil {
				return
			}
			echoFrames(br, bw)
			return
		case path == "/bytes", path == "/json":
			resp, err := s.bytesResponse(r.query, path == "/json")
			if err != nil {
				fmt.Fprintf(bw, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(err.Error()), err.Error())
				break
			}
			bw.Write(resp)
		case path == "/headers":
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nX-Node: %s\r\n\r\n", len(r.header), s.name)
			bw.Write(r.header)
		default:
			bw.Write(s.ok)
		}
		if r.close {
			bw.Flush()
			return
		}
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// bytesResponse returns the whole response for /bytes, or /json with
// json, built once per query.
func (s *upstreamServer) bytesResponse(query string, json bool) ([]byte, error) {
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("bad query: %w", err)
	}
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 || n > maxBytes {
		return nil, fmt.Errorf("n must be a number from 0 to %d", maxBytes)
	}
	k := bytesKey{n: n, chunked: q.Get("chunked") == "1", json: json}
	if v, ok := s.responses.Load(k); ok {
		return v.([]byte), nil
	}
	v, _ := s.responses.LoadOrStore(k, buildBytesResponse(s.name, k))
	return v.([]byte), nil
}

// buildBytesResponse builds a complete response of k.n bytes of a
// repeating pattern, or of JSON; chunked responses use 16 KiB chunks.
func buildBytesResponse(name string, k bytesKey) []byte {
	body := make([]byte, k.n)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	typ := "application/octet-stream"
	if k.json {
		body, typ = taskListJSON(k.n), "application/json"
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: " + typ + "\r\nX-Node: " + name + "\r\n")
	if !k.chunked {
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", k.n)
		b.Write(body)
		return b.Bytes()
	}
	b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	const chunk = 16 << 10
	for len(body) > 0 {
		c := body[:min(chunk, len(body))]
		fmt.Fprintf(&b, "%x\r\n", len(c))
		b.Write(c)
		b.WriteString("\r\n")
		body = body[len(c):]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// taskListJSON is n bytes of what Flowable's REST API answers to a task
// query: a list of tasks with their names, assignees, dates and
// variables, as compressible as the real thing (about 7.5:1 with gzip -5),
// not a repeated byte that any compressor squeezes to nothing.
func taskListJSON(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"data":[`)
	names := []string{"Review invoice", "Approve leave request", "Check supplier contract", "Escalate overdue claim"}
	users := []string{"kermit", "gonzo", "fozzie", "piggy", "rowlf"}
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":"%08x-%04x","name":%q,"assignee":%q,"processInstanceId":"%d",`+
			`"created":"2026-%02d-%02dT%02d:%02d:%02d.%03dZ","priority":%d,"formKey":"form-%d",`+
			`"variables":[{"name":"amount","type":"integer","value":%d},{"name":"approved","type":"boolean","value":%v}]},`,
			uint32(i)*2654435761, i, names[i%len(names)], users[i%len(users)], 100000+i*13,
			1+i%12, 1+i%28, i%24, (i*7)%60, (i*13)%60, (i*37)%1000, 50+i%7, i%9, (i*7919)%100000, i%3 == 0)
	}
	return b.Bytes()[:n]
}
