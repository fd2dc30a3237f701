package proxy

import (
	"crypto/rand"
	"encoding/binary"
)

// frameTracker follows WebSocket frame boundaries in the client-to-upstream
// direction of a tunnel, so that flowgate can insert a close frame of its own
// between two client frames and never inside one.
type frameTracker struct {
	hdr       [14]byte // the header being read
	hdrLen    int      // bytes of hdr read so far
	hdrNeed   int      // header size once known; 0 before the second byte
	remaining uint64   // payload bytes of the current frame still to come
	broken    bool     // the stream stopped looking like WebSocket frames
}

// atBoundary reports whether the bytes seen so far end exactly at a frame
// boundary.
func (f *frameTracker) atBoundary() bool {
	return !f.broken && f.hdrLen == 0 && f.remaining == 0
}

// feed advances the tracker over p.
func (f *frameTracker) feed(p []byte) {
	for len(p) > 0 && !f.broken {
		if f.remaining > 0 {
			n := uint64(len(p))
			if n > f.remaining {
				n = f.remaining
			}
			f.remaining -= n
			p = p[n:]
			continue
		}
		f.hdr[f.hdrLen] = p[0]
		f.hdrLen++
		p = p[1:]
		if f.hdrLen == 2 {
			f.hdrNeed = 2
			switch l := f.hdr[1] & 0x7f; l {
			case 126:
				f.hdrNeed += 2
			case 127:
				f.hdrNeed += 8
			}
			if f.hdr[1]&0x80 != 0 {
				f.hdrNeed += 4
			}
		}
		if f.hdrLen >= 2 && f.hdrLen == f.hdrNeed {
			switch l := f.hdr[1] & 0x7f; l {
			case 126:
				f.remaining = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
			case 127:
				f.remaining = binary.BigEndian.Uint64(f.hdr[2:10])
				if f.remaining>>63 != 0 {
					f.broken = true
				}
			default:
				f.remaining = uint64(l)
			}
			f.hdrLen, f.hdrNeed = 0, 0
		}
	}
}

// goingAwayFrame is a masked client close frame with status 1001 (going
// away), as a client would send it (RFC 6455 5.5.1: client frames are masked).
func goingAwayFrame() []byte {
	var mask [4]byte
	rand.Read(mask[:])
	payload := [2]byte{0x03, 0xe9} // 1001
	f := []byte{0x88, 0x80 | 2, mask[0], mask[1], mask[2], mask[3], payload[0] ^ mask[0], payload[1] ^ mask[1]}
	return f
}
