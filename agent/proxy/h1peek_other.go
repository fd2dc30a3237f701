//go:build !linux

package proxy

// alive reports whether an idle connection can carry a request. Without a
// non-blocking peek, a connection the upstream closed is found out when it
// is used: an idempotent request is then sent again on a new one.
func (c *h1Conn) alive() bool { return true }

// socketQuiet reports whether nothing waits to be read on a socket; here
// it cannot tell, and says so.
func socketQuiet(uintptr) bool { return true }
