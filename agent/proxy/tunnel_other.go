//go:build !unix

package proxy

import (
	"errors"
	"syscall"
)

// canWaitReadable: waitReadable does not work here; tunnels read
// continuously.
const canWaitReadable = false

func waitReadable(syscall.RawConn) error {
	return errors.New("waiting for a readable socket is not supported on this system")
}
