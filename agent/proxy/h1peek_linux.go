package proxy

import (
	"syscall"
	"unsafe"
)

// alive reports whether an idle connection can carry a request: the
// upstream has neither closed it nor sent anything unasked (a TLS close
// alert, a stray response). It peeks at the socket without blocking: one
// system call, where http.Transport keeps a goroutine reading every idle
// connection. The call goes to the descriptor directly: the connection is
// idle, so no read or close of it can run at the same time.
func (c *h1Conn) alive() bool {
	return c.fd < 0 || socketQuiet(uintptr(c.fd))
}

// socketQuiet reports whether nothing waits to be read on the socket fd,
// not even its end: a non-blocking one-byte peek told EAGAIN.
func socketQuiet(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno != syscall.EINTR {
			return errno == syscall.EAGAIN
		}
	}
}
