//go:build unix

package proxy

import "syscall"

// canWaitReadable: waitReadable works here.
const canWaitReadable = true

// waitReadable waits until raw's socket has something to read (data, the
// end of the stream or an error) without reading it: it peeks at one byte,
// into a stack array, and parks in the runtime's poller while there is
// none. It fails when the connection is closed.
func waitReadable(raw syscall.RawConn) error {
	return raw.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
			if err == syscall.EINTR {
				continue
			}
			// The socket is non-blocking: EAGAIN means nothing yet. Data,
			// the end of the stream and errors are for the next read.
			return err != syscall.EAGAIN
		}
	})
}
