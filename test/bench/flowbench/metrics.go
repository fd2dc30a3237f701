package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// handshakeMetric is the counter flowgate counts TLS handshakes in, by
// whether they resumed a session: the resumption scenario's server-side
// count for flowgate, which sends no X-TLS-Resumed header.
const handshakeMetric = "flowgate_tls_handshakes_total"

// handshakes are the server-side handshake counts at one moment.
type handshakes struct {
	total, resumed float64
}

// handshakeCounts reads flowgate's handshake counter from its admin
// listener; ok is false for other peers and when the metric is absent.
func (p *peer) handshakeCounts(ctx context.Context) (handshakes, bool) {
	if p.adminPort == 0 {
		return handshakes{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.adminPort), nil)
	if err != nil {
		return handshakes{}, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return handshakes{}, false
	}
	defer resp.Body.Close()
	return parseHandshakes(resp.Body)
}

// parseHandshakes sums handshakeMetric in Prometheus text format: all
// samples, and those labelled resumed="true".
func parseHandshakes(r io.Reader) (handshakes, bool) {
	var h handshakes
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, handshakeMetric)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		found = true
		h.total += v
		if strings.Contains(labels, `resumed="true"`) {
			h.resumed += v
		}
	}
	return h, found
}
