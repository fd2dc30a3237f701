package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxFramePayload bounds a frame the benchmark reads: it never sends more.
const maxFramePayload = 2 << 20

var errFrameTooLarge = errors.New("websocket frame larger than 2 MiB")

// frame is one WebSocket frame as read: the first header byte (FIN, RSV and
// opcode) and the unmasked payload.
type frame struct {
	b0      byte
	payload []byte
}

func (f frame) opcode() byte { return f.b0 & 0x0f }

// readFrame reads one frame into buf (grown when too small) and unmasks it.
// The returned payload aliases buf.
func readFrame(br *bufio.Reader, buf []byte) (frame, []byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(br, hdr[:2]); err != nil {
		return frame{}, buf, err
	}
	b0, b1 := hdr[0], hdr[1]
	masked := b1&0x80 != 0
	n := uint64(b1 & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return frame{}, buf, err
		}
		n = uint64(binary.BigEndian.Uint16(hdr[:2]))
	case 127:
		if _, err := io.ReadFull(br, hdr[:8]); err != nil {
			return frame{}, buf, err
		}
		n = binary.BigEndian.Uint64(hdr[:8])
	}
	if n > maxFramePayload {
		return frame{}, buf, errFrameTooLarge
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return frame{}, buf, err
		}
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	p := buf[:n]
	if _, err := io.ReadFull(br, p); err != nil {
		return frame{}, buf, err
	}
	if masked {
		for i := range p {
			p[i] ^= key[i&3]
		}
	}
	return frame{b0: b0, payload: p}, buf, nil
}

// writeFrame writes one frame. With a mask (client to server) the payload
// is masked in place: the caller's slice is changed.
func writeFrame(w *bufio.Writer, b0 byte, payload []byte, mask *[4]byte) error {
	var hdr [14]byte
	hdr[0] = b0
	n := len(payload)
	i := 2
	switch {
	case n < 126:
		hdr[1] = byte(n)
	case n <= 0xffff:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		i = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		i = 10
	}
	if mask != nil {
		hdr[1] |= 0x80
		copy(hdr[i:], mask[:])
		i += 4
		for j := range payload {
			payload[j] ^= mask[j&3]
		}
	}
	if _, err := w.Write(hdr[:i]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// websocketAccept computes Sec-WebSocket-Accept for a client's key.
func websocketAccept(key string) string {
	h := sha1.New()
	io.WriteString(h, key)
	io.WriteString(h, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// echoFrames answers every data frame with the same frame, pings with pongs,
// and a close with a close, until the peer closes or an error occurs.
func echoFrames(br *bufio.Reader, bw *bufio.Writer) error {
	var buf []byte
	for {
		f, b, err := readFrame(br, buf)
		buf = b
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch f.opcode() {
		case opClose:
			writeFrame(bw, 0x80|opClose, f.payload, nil)
			return bw.Flush()
		case opPing:
			err = writeFrame(bw, 0x80|opPong, f.payload, nil)
		case opPong:
		case opText, opBinary, opContinuation:
			err = writeFrame(bw, f.b0, f.payload, nil)
		default:
			return fmt.Errorf("websocket opcode %#x not supported", f.opcode())
		}
		if err != nil {
			return err
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}
