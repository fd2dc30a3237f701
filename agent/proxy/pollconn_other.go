//go:build !unix

package proxy

import "net"

// pollConn is not used here: reads go through net.
type pollConn struct{ net.Conn }

func (c *pollConn) hold(bool) {}

// newPollConn returns c.
func newPollConn(c net.Conn) net.Conn { return c }
